"""The admin, an operator's console: staff read every conversation (read-only),
see usage against quotas, export conversations and configure providers and
limits; superusers see who read whose conversation.

One module per page or model; Django's autodiscover imports this package, and
importing the modules below registers their ModelAdmins.
"""

from chat.admin import audit, conversations, limits, messages, providers, usage, users  # noqa: F401
