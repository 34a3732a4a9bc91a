"""Conversations and messages: data plus small helpers (writes live in services)."""

from django.conf import settings
from django.db import models

# A model id as a chat stores it: "<provider name>/<upstream model>", e.g. "GPTalk/gpt-4o".
# Every field and check of such an id uses this length.
MODEL_ID_MAX = 100
# The name of a provider (the first part of a model id).
PROVIDER_NAME_MAX = 100


class ConversationQuerySet(models.QuerySet):
    def for_user(self, user) -> "ConversationQuerySet":
        """Only the conversations `user` owns; anonymous users own none."""
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(owner=user)


class Conversation(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True, default="")
    model = models.CharField(max_length=MODEL_ID_MAX, blank=True, default="")
    system_prompt = models.TextField(blank=True, default="")
    pinned = models.BooleanField(default=False)
    # A read-only link anyone holding it can open; None when not shared.
    share_token = models.CharField(max_length=64, unique=True, null=True, blank=True)
    shared_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        ordering = ("-updated_at", "-id")
        indexes = [models.Index(fields=("owner", "-updated_at"))]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"


class MessageQuerySet(models.QuerySet):
    def for_user(self, user) -> "MessageQuerySet":
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(conversation__owner=user)


class Message(models.Model):
    class Role(models.TextChoices):
        SYSTEM = "system", "System"
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        STREAMING = "streaming", "Streaming"
        COMPLETE = "complete", "Complete"
        STOPPED = "stopped", "Stopped"
        FAILED = "failed", "Failed"
        INTERRUPTED = "interrupted", "Interrupted"

    FINAL_STATUSES = (Status.COMPLETE, Status.STOPPED, Status.FAILED, Status.INTERRUPTED)

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True, default="")
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.COMPLETE, db_index=True
    )
    error = models.TextField(blank=True, default="")
    provider = models.CharField(max_length=PROVIDER_NAME_MAX, blank=True, default="")
    model = models.CharField(max_length=MODEL_ID_MAX, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    first_delta_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    delta_count = models.PositiveIntegerField(default=0)
    # Usage of an answer, written when it ends (chat.services.usage): the size of
    # what was sent upstream and of what came back, in characters and tokens.
    # Tokens are the upstream's own count when it reports one; otherwise an
    # estimate, and `tokens_estimated` says so. Empty for answers older than this.
    prompt_chars = models.PositiveIntegerField(null=True, blank=True)
    answer_chars = models.PositiveIntegerField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    answer_tokens = models.PositiveIntegerField(null=True, blank=True)
    tokens_estimated = models.BooleanField(default=False)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ("created_at", "id")

    def __str__(self) -> str:
        preview = self.content[:60].replace("\n", " ")
        return f"{self.role}: {preview}"


def validate_base_url(value: str) -> None:
    """An http(s) URL with a host; any host name, including one-word ones."""
    from urllib.parse import urlsplit

    from django.core.exceptions import ValidationError

    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        parts, port_ok = None, False
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise ValidationError("Enter an http:// or https:// URL with a host, e.g. http://ollama:11434/v1.")


class Provider(models.Model):
    """An upstream that writes answers, configured by staff in the admin.

    The API key is write-only: the admin never shows it back and nothing sends
    it to a browser.
    """

    class Kind(models.TextChoices):
        GPTALK = "gptalk", "GPTalk"
        OPENAI = "openai", "OpenAI-compatible"

    name = models.CharField(max_length=PROVIDER_NAME_MAX, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # Not a URLField: Django's URL check refuses one-word hosts such as
    # http://ollama:11434/v1 (a docker-compose service name).
    base_url = models.CharField(
        max_length=500, blank=True, default="", validators=[validate_base_url],
        help_text="e.g. http://ollama:11434/v1. Empty for GPTalk means the GPTALK_URL setting.",
    )
    api_key = models.CharField(max_length=500, blank=True, default="")
    # The upstream's own name of a model ("gpt-4o"), without the provider prefix of a model id.
    default_model = models.CharField(max_length=200, blank=True, default="")
    enabled = models.BooleanField(default=True)
    order = models.PositiveIntegerField(default=0, help_text="Lower comes first; fallback follows this order.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("order", "id")

    def __str__(self) -> str:
        return self.name


class UsageLimit(models.Model):
    """Limits for one user or one group, edited by staff; empty fields fall back.

    A user's own row wins; else the most generous value among their groups'
    rows; else the CHAT_* defaults in settings.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
        related_name="usage_limit",
    )
    group = models.OneToOneField(
        "auth.Group", null=True, blank=True, on_delete=models.CASCADE, related_name="usage_limit"
    )
    messages_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Answers a user may start in any 60 seconds."
    )
    concurrent_answers = models.PositiveIntegerField(
        null=True, blank=True, help_text="Answers being written at the same time."
    )
    max_message_chars = models.PositiveIntegerField(
        null=True, blank=True, help_text="Longest message, in characters."
    )
    daily_answer_chars = models.PositiveIntegerField(
        null=True, blank=True, help_text="Characters of answers per day (UTC)."
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(user__isnull=False, group__isnull=True)
                    | models.Q(user__isnull=True, group__isnull=False)
                ),
                name="usage_limit_for_one_user_or_one_group",
            )
        ]

    def __str__(self) -> str:
        return f"Limits for {self.user or self.group}"


class AccountSettings(models.Model):
    """A person's defaults for the chats they start, edited on their account page.

    New conversations copy them (the model, and the instructions as the system
    prompt), so a later change never rewrites a chat that already exists.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account_settings"
    )
    default_model = models.CharField(max_length=MODEL_ID_MAX, blank=True, default="")
    custom_instructions = models.TextField(blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Account settings of {self.user}"


class UsageReport(Message):
    """The admin's usage page (chat/admin/usage.py): answers counted, not edited.

    A proxy so that the page has its own entry and permission in the admin.
    """

    class Meta:
        proxy = True
        verbose_name = "usage"
        verbose_name_plural = "usage"


class TranscriptView(models.Model):
    """One reading of a user's conversation by a staff member in the admin.

    Written by chat.services.audit whenever staff open (or export) a transcript
    that is not their own; read-only, shown to superusers. Names are copied so
    that the record outlives deleted accounts and conversations.
    """

    viewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    viewer_name = models.CharField(max_length=150)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    owner_name = models.CharField(max_length=150)
    conversation = models.ForeignKey(
        Conversation, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    conversation_title = models.CharField(max_length=200, blank=True, default="")
    # How it was read: the transcript page, a single message, an export.
    action = models.CharField(max_length=16, default="transcript")
    viewed_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ("-viewed_at", "-id")

    def __str__(self) -> str:
        return f"{self.viewer_name} read {self.owner_name}'s “{self.conversation_title}”"
