from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Called once the apps are loaded (after the admin's autodiscover):
        the user admin gains its reset-link action."""
        import chat.admin_users  # noqa: F401

