"""Staff edit usage limits per user or per group."""

from django.contrib import admin

from chat.models import UsageLimit


@admin.register(UsageLimit)
class UsageLimitAdmin(admin.ModelAdmin):
    list_display = (
        "__str__", "messages_per_minute", "concurrent_answers", "max_message_chars", "daily_answer_chars",
    )
    list_select_related = ("user", "group")
    autocomplete_fields = ("user", "group")
    search_fields = ("user__username", "group__name")
    fieldsets = (
        ("Applies to (one of them)", {"fields": ("user", "group")}),
        (
            "Limits (empty: the group's or the site default)",
            {"fields": ("messages_per_minute", "concurrent_answers", "max_message_chars", "daily_answer_chars")},
        ),
    )
