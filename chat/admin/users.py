"""The user admin: Django's own, with links to each user's conversations and
usage, and an action that makes a one-time password reset link (for sites
without a mail server)."""

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.urls import reverse
from django.utils.html import format_html

from chat.password_reset import password_reset_link_make

User = get_user_model()

if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """The user's page links to their conversations and usage
    (templates/admin/auth/user/change_form.html)."""

    list_display = (*DjangoUserAdmin.list_display, "conversations_link")
    actions = ("make_password_reset_link",)

    @admin.display(description="Conversations")
    def conversations_link(self, obj) -> str:
        url = reverse("admin:chat_conversation_changelist")
        return format_html('<a href="{}?owner__id__exact={}">conversations</a>', url, obj.pk)

    @admin.action(description="Make a one-time password reset link")
    def make_password_reset_link(self, request, queryset) -> None:
        for user in queryset:
            link = password_reset_link_make(user=user, request=request)
            self.message_user(
                request,
                f"Password reset link for {user.get_username()} (works once; give it to them "
                f"privately): {link}",
                messages.SUCCESS,
            )
