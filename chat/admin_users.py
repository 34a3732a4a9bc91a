"""The user admin: Django's own, plus links to each user's conversations and usage."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.urls import reverse
from django.utils.html import format_html

User = get_user_model()

admin.site.unregister(User)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """The user's page links to their conversations (templates/admin/auth/user/change_form.html)."""

    list_display = (*DjangoUserAdmin.list_display, "conversations_link")

    @admin.display(description="Conversations")
    def conversations_link(self, obj) -> str:
        url = reverse("admin:chat_conversation_changelist")
        return format_html('<a href="{}?owner__id__exact={}">conversations</a>', url, obj.pk)
