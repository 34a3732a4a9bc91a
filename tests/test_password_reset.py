"""Password reset against a real SMTP server on loopback (aiosmtpd): the mail
arrives and its link sets a new password; a server that is down is said to be
down; known and unknown addresses look the same; without mail the page says to
ask an administrator, whose admin makes a one-time link; and a new password
lifts a login lock-out, whose page gives the wait in words."""

from __future__ import annotations

import email
import re
import threading

import pytest
from aiosmtpd.controller import Controller
from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.fixtures.emulator import free_port

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a brand new heron 8842"


class Inbox:
    """aiosmtpd handler: keeps every message the server accepted."""

    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []
        self.arrived = threading.Event()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(email.message_from_bytes(envelope.content))
        self.arrived.set()
        return "250 OK"


@pytest.fixture
def smtp_server(settings):
    """A real SMTP server on a free loopback port, and the site configured to use it."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_CONFIGURED = True
    yield inbox
    controller.stop()


@pytest.fixture
def dead_smtp(settings):
    """Mail configured, but nothing listens on the port (the server is down)."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_CONFIGURED = True


def set_password_through(client, link: str, password: str):
    """Open a reset link and choose `password` on the page it leads to."""
    confirm = client.get(link, follow=True)
    assert confirm.status_code == 200 and confirm.context["validlink"] is True
    return client.post(
        confirm.redirect_chain[-1][0], {"new_password1": password, "new_password2": password}
    )


def test_reset_mail_goes_through_a_real_smtp_server_and_its_link_sets_the_password(client, make_user, smtp_server):
    user = make_user("heron", email="heron@example.com")
    response = client.post(reverse("password_reset"), {"email": "heron@example.com"})
    assert response.status_code == 302 and response["Location"] == reverse("password_reset_done")
    assert smtp_server.arrived.wait(10)
    [message] = smtp_server.messages
    assert message["To"] == "heron@example.com"
    body = message.get_payload(decode=True).decode()
    link = re.search(r"https?://[^/\s]+(/accounts/reset/\S+/)", body).group(1)
    done = set_password_through(client, link, NEW_PASSWORD)
    assert done["Location"] == reverse("password_reset_complete")
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    # The link worked once: the password it was made from has changed.
    again = client.get(link, follow=True)
    assert again.context["validlink"] is False


def test_known_and_unknown_addresses_get_the_same_answer(client, make_user, smtp_server):
    make_user("heron", email="heron@example.com")
    known = client.post(reverse("password_reset"), {"email": "heron@example.com"})
    unknown = client.post(reverse("password_reset"), {"email": "nobody@example.com"})
    assert (known.status_code, known["Location"]) == (unknown.status_code, unknown["Location"])
    assert smtp_server.arrived.wait(10)
    assert [m["To"] for m in smtp_server.messages] == ["heron@example.com"]


@pytest.mark.parametrize("address", ["heron@example.com", "nobody@example.com"])
def test_a_mail_server_that_is_down_is_not_called_sent(client, make_user, dead_smtp, address):
    make_user("heron", email="heron@example.com")
    response = client.post(reverse("password_reset"), {"email": address})
    assert response.status_code == 503
    body = response.content.decode()
    assert "could not be sent" in body and "ask an administrator" in body
    assert "on its way" not in body.replace("Nothing is on its way", "")


def test_without_mail_the_reset_page_says_to_ask_an_administrator(client, make_user, settings, mailoutbox):
    settings.EMAIL_CONFIGURED = False
    make_user("heron", email="heron@example.com")
    page = client.get(reverse("password_reset"))
    assert 'id="reset-no-mail"' in page.content.decode() and 'name="email"' not in page.content.decode()
    # A POST changes nothing and sends nothing.
    response = client.post(reverse("password_reset"), {"email": "heron@example.com"})
    assert response.status_code == 200 and 'id="reset-no-mail"' in response.content.decode()
    assert mailoutbox == []


def test_without_mail_the_reset_page_speaks_russian(client, settings):
    settings.EMAIL_CONFIGURED = False
    page = client.get(reverse("password_reset"), HTTP_ACCEPT_LANGUAGE="ru")
    assert "администратор" in page.content.decode()


def test_mail_is_configured_only_by_a_host_or_a_chosen_backend():
    """The definition, read from the environment in a fresh interpreter."""
    import subprocess
    import sys

    from tests.fixtures.emulator import REPO_ROOT

    def configured(**env: str) -> str:
        code = (
            "import django; django.setup(); from django.conf import settings;"
            " print(settings.EMAIL_CONFIGURED, settings.EMAIL_BACKEND)"
        )
        base = {"DJANGO_SETTINGS_MODULE": "gptalk_site.settings", "PATH": "/usr/bin:/bin", "DJANGO_DEBUG": "true"}
        return subprocess.run(
            [sys.executable, "-c", code], cwd=REPO_ROOT, env={**base, **env}, capture_output=True, text=True, check=True
        ).stdout.strip()

    assert configured() == "False django.core.mail.backends.console.EmailBackend"
    assert configured(EMAIL_HOST="mail.example.com") == "True django.core.mail.backends.smtp.EmailBackend"
    assert configured(DJANGO_EMAIL_BACKEND="django.core.mail.backends.console.EmailBackend").startswith("True")


def test_staff_make_a_one_time_reset_link_in_the_admin(client, make_user):
    user = make_user("heron")  # no email address at all
    staff = get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)
    client.force_login(staff)
    response = client.post(
        reverse("admin:auth_user_changelist"),
        {"action": "make_password_reset_link", "_selected_action": [user.pk]},
        follow=True,
    )
    shown = [str(m) for m in response.context["messages"]]
    link = re.search(r"https?://[^/\s]+(/accounts/reset/\S+/)", shown[0]).group(1)
    client.logout()
    set_password_through(client, link, NEW_PASSWORD)
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert client.get(link, follow=True).context["validlink"] is False


def fail_logins(client, username: str, times: int):
    for _ in range(times):
        response = client.post(reverse("login"), {"username": username, "password": "wrong"})
    return response


def test_lock_out_page_gives_the_wait_in_words(client, make_user, settings):
    make_user("heron")
    locked = fail_logins(client, "heron", settings.AXES_FAILURE_LIMIT)
    assert locked.status_code == 429
    text = " ".join(locked.content.decode().split()).replace("\xa0", " ")
    assert "Try again in 15 minutes" in text and "PT15M" not in text
    locked_ru = client.post(
        reverse("login"), {"username": "heron", "password": "wrong"}, HTTP_ACCEPT_LANGUAGE="ru"
    )
    assert "15 минут" in locked_ru.content.decode().replace("\xa0", " ")


def test_a_completed_reset_lifts_the_lock_out(client, make_user, smtp_server, settings):
    make_user("heron", email="heron@example.com")
    assert fail_logins(client, "heron", settings.AXES_FAILURE_LIMIT).status_code == 429
    # Still locked, even with the right password.
    assert client.post(reverse("login"), {"username": "heron", "password": PASSWORD}).status_code == 429
    client.post(reverse("password_reset"), {"email": "heron@example.com"})
    assert smtp_server.arrived.wait(10)
    body = smtp_server.messages[0].get_payload(decode=True).decode()
    link = re.search(r"https?://[^/\s]+(/accounts/reset/\S+/)", body).group(1)
    set_password_through(client, link, NEW_PASSWORD)
    response = client.post(reverse("login"), {"username": "heron", "password": NEW_PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("chat:index")
