"""Who read whose conversation: shown to superusers only, and never editable."""

from __future__ import annotations

from django.contrib import admin

from chat.models import TranscriptView


@admin.register(TranscriptView)
class TranscriptViewAdmin(admin.ModelAdmin):
    list_display = ("viewed_at", "viewer_name", "owner_name", "conversation_title", "action")
    list_filter = ("action", "viewed_at")
    search_fields = ("viewer_name", "owner_name", "conversation_title")
    date_hierarchy = "viewed_at"
    list_display_links = None
    fields = (
        "viewed_at", "viewer", "viewer_name", "owner", "owner_name", "conversation", "conversation_title", "action",
    )  # fmt: skip
    readonly_fields = fields

    def has_module_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # The record of who read what is only worth something if nobody can rewrite it.
        return False
