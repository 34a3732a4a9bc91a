"""Single messages in the admin: found by text, status or owner; read-only."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from chat.models import Message
from chat.services.audit import transcript_views_record


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = (
        "id", "conversation", "owner", "role", "status", "short_content", "model", "answer_tokens", "created_at",
    )  # fmt: skip
    list_filter = ("role", "status", "provider", "tokens_estimated", "created_at")
    search_fields = ("content", "conversation__title", "conversation__owner__username")
    search_help_text = "Searches message text, conversation titles and owners' user names."
    date_hierarchy = "created_at"
    list_select_related = ("conversation", "conversation__owner")
    fields = (
        "conversation_link", "parent", "role", "status", "content", "error", "provider", "model",
        "created_at", "updated_at", "first_delta_ms", "duration_ms", "delta_count",
        "prompt_chars", "answer_chars", "prompt_tokens", "answer_tokens", "tokens_estimated",
    )  # fmt: skip
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """A message's page shows its whole text: recorded like a transcript."""
        message = self.get_object(request, object_id)
        if message is not None and self.has_view_permission(request, message):
            transcript_views_record(viewer=request.user, conversations=[message.conversation], action="message")
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="Owner", ordering="conversation__owner__username")
    def owner(self, obj: Message):
        return obj.conversation.owner

    @admin.display(description="Content")
    def short_content(self, obj: Message) -> str:
        text = obj.content.replace("\n", " ")
        return text if len(text) <= 80 else text[:79] + "…"

    @admin.display(description="Conversation")
    def conversation_link(self, obj: Message) -> str:
        url = reverse("admin:chat_conversation_transcript", args=[obj.conversation_id])
        return format_html('<a href="{}#m{}">{}</a> (transcript)', url, obj.pk, obj.conversation)
