"""The admin, an operator's console: staff read every conversation (read-only),
see usage against quotas, export conversations and configure providers and
limits; superusers see who read whose conversation.

One module per page or model; Django's autodiscover imports this package, and
importing the modules below registers their ModelAdmins.
"""

from chat import admin_users  # noqa: F401 - the user admin with links to a user's chats
from chat.admin import audit, conversations, limits, messages, providers, usage  # noqa: F401
