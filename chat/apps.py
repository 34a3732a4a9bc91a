from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Called once the app registry is ready: connect the signal handlers."""
        from django.contrib.auth import get_user_model
        from django.contrib.auth.signals import user_logged_out
        from django.core.signals import setting_changed
        from django.db.models.signals import m2m_changed, post_delete, post_save

        from chat.models import Provider, UsageLimit
        from chat.providers.registry import provider_rows_forget
        from chat.services.limits import limits_changed
        from chat.signouts import on_logged_out, on_user_deleted, on_user_saved

        # A provider saved or deleted in this process is seen by the next answer.
        post_save.connect(provider_rows_forget, sender=Provider, dispatch_uid="provider-rows-forget-save")
        post_delete.connect(provider_rows_forget, sender=Provider, dispatch_uid="provider-rows-forget-delete")
        # Limits changed in this process: no upstream request before the database
        # has checked them again (chat/consumers.py starts new chats early).
        post_save.connect(limits_changed, sender=UsageLimit, dispatch_uid="limits-changed-save")
        post_delete.connect(limits_changed, sender=UsageLimit, dispatch_uid="limits-changed-delete")
        m2m_changed.connect(limits_changed, sender=get_user_model().groups.through, dispatch_uid="limits-groups")
        setting_changed.connect(limits_changed, dispatch_uid="limits-settings")
        # A session that ends closes its open websockets, in every process.
        user_model = get_user_model()
        user_logged_out.connect(on_logged_out, dispatch_uid="signouts-logged-out")
        post_save.connect(on_user_saved, sender=user_model, dispatch_uid="signouts-user-saved")
        post_delete.connect(on_user_deleted, sender=user_model, dispatch_uid="signouts-user-deleted")
