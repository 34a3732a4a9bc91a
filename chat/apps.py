from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Called once the app registry is ready: connect the signal handlers."""
        from django.db.models.signals import post_delete, post_save

        from chat.models import Provider
        from chat.providers.registry import provider_rows_forget

        # A provider saved or deleted in this process is seen by the next answer.
        post_save.connect(provider_rows_forget, sender=Provider, dispatch_uid="provider-rows-forget-save")
        post_delete.connect(provider_rows_forget, sender=Provider, dispatch_uid="provider-rows-forget-delete")
