"""Login throttling, security headers and the Content-Security-Policy."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


def attempt(client, username, password):
    return client.post(reverse("login"), {"username": username, "password": password})


def test_login_is_locked_after_repeated_wrong_passwords(client, make_user, settings):
    make_user("victim")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = attempt(client, "victim", "wrong guess")
        assert response.status_code == 200  # the form again, with its error
    locked = attempt(client, "victim", "wrong guess")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    # Even the right password is refused while locked.
    assert attempt(client, "victim", PASSWORD).status_code == 429
    assert "_auth_user_id" not in client.session


def test_a_good_login_resets_the_count_and_other_users_are_not_locked(client, make_user, settings):
    make_user("careful")
    make_user("bystander")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        attempt(client, "careful", "typo")
    assert attempt(client, "careful", PASSWORD).status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert attempt(client, "careful", "typo again").status_code == 200
    assert attempt(client, "bystander", PASSWORD).status_code == 302


@pytest.mark.parametrize("name", ["login", "signup", "chat:index"])
def test_security_headers_and_csp_without_inline_scripts(client, make_user, name):
    if name == "chat:index":
        client.force_login(make_user("reader"))
    response = client.get(reverse(name))
    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    directives = {part.split()[0]: part.split()[1:] for part in csp.split(";") if part.strip()}
    assert directives["script-src"] == ["'self'"]
    assert "'unsafe-inline'" not in directives["script-src"]
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response.cookies.get("csrftoken") is None or response.cookies["csrftoken"]["samesite"] == "Lax"


def test_session_cookie_is_httponly_and_samesite(client, make_user):
    make_user("cookie")
    response = attempt(client, "cookie", PASSWORD)
    cookie = response.cookies["sessionid"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"


def test_stream_tokens_are_redacted_even_if_httpx_logs_urls(caplog):
    import logging

    logger = logging.getLogger("httpx")
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        with caplog.at_level(logging.INFO, logger="httpx"):
            logger.info('HTTP Request: %s %s "%s"', "GET",
                        "http://127.0.0.1:8765/api/chatgpt/chatapi/stream?token=s3cr3t-stream&x=1", "200 OK")
    finally:
        logger.setLevel(old)
    assert "s3cr3t-stream" not in caplog.text
    assert "token=[redacted]&x=1" in caplog.text
