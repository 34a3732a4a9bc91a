"""The user admin with one more action: make a one-time password reset link,
for sites without a mail server (imported by chat.apps.ChatConfig.ready)."""

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from chat.password_reset import password_reset_link_make

User = get_user_model()


class ChatUserAdmin(UserAdmin):
    actions = ("make_password_reset_link",)

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


if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, ChatUserAdmin)
