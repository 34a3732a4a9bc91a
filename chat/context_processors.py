from django.conf import settings
from django.http import HttpRequest


def site(request: HttpRequest) -> dict:
    """Template context every page needs (called once per rendered template)."""
    return {"SIGNUP_ENABLED": settings.SIGNUP_ENABLED}
