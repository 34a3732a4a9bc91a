"""Accounts under /accounts/: sign-up, log in/out, password change and reset."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.urls import reverse

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a brand new heron 8842"


def logged_in_user_id(client):
    return client.session.get("_auth_user_id")


# ---- sign-up ----------------------------------------------------------------


def test_signup_page_renders(client):
    response = client.get(reverse("signup"))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'name="username"' in body and 'name="password1"' in body
    assert "csrfmiddlewaretoken" in body


def test_signup_creates_user_logs_in_and_redirects_to_chat(client):
    response = client.post(
        reverse("signup"),
        {
            "username": "heron",
            "email": "heron@example.com",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("chat:index")
    user = get_user_model().objects.get(username="heron")
    assert user.email == "heron@example.com"
    assert user.check_password(PASSWORD)
    assert logged_in_user_id(client) == str(user.pk)
    assert client.get("/").status_code == 200


def test_signup_follows_a_safe_next_and_ignores_an_unsafe_one(client):
    data = {"username": "a", "password1": PASSWORD, "password2": PASSWORD}
    response = client.post(reverse("signup") + "?next=/c/5/", data)
    assert response["Location"] == "/c/5/"
    client.logout()
    data["username"] = "b"
    response = client.post(reverse("signup"), {**data, "next": "https://evil.example/"})
    assert response["Location"] == reverse("chat:index")


def test_signup_with_bad_passwords_shows_errors_and_creates_nothing(client):
    response = client.post(
        reverse("signup"),
        {"username": "heron", "password1": PASSWORD, "password2": "different"},
    )
    assert response.status_code == 200
    assert not get_user_model().objects.filter(username="heron").exists()
    assert (
        "didn" in response.content.decode()
    )  # "The two password fields didn’t match."
    assert logged_in_user_id(client) is None


def test_signup_disabled_is_404_and_login_hides_the_link(client, settings):
    settings.SIGNUP_ENABLED = False
    assert client.get(reverse("signup")).status_code == 404
    response = client.post(
        reverse("signup"),
        {"username": "x", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 404
    assert not get_user_model().objects.filter(username="x").exists()
    login_page = client.get(reverse("login")).content.decode()
    assert reverse("signup") not in login_page


def test_login_page_links_to_signup_when_enabled(client, settings):
    settings.SIGNUP_ENABLED = True
    assert reverse("signup") in client.get(reverse("login")).content.decode()


def test_signed_in_user_visiting_signup_goes_to_chat(client, make_user):
    client.force_login(make_user())
    response = client.get(reverse("signup"))
    assert response.status_code == 302
    assert response["Location"] == reverse("chat:index")


# ---- log in / out -------------------------------------------------------------


def test_login_page_and_login_redirect_to_next(client, make_user):
    user = make_user("heron")
    page = client.get(reverse("login") + "?next=/c/3/")
    assert page.status_code == 200
    assert 'name="next" value="/c/3/"' in page.content.decode()
    response = client.post(
        reverse("login"), {"username": "heron", "password": PASSWORD, "next": "/c/3/"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/c/3/"
    assert logged_in_user_id(client) == str(user.pk)


def test_login_without_next_goes_to_chat(client, make_user):
    make_user("heron")
    response = client.post(
        reverse("login"), {"username": "heron", "password": PASSWORD}
    )
    assert response["Location"] == reverse("chat:index")


def test_wrong_password_shows_an_error(client, make_user):
    make_user("heron")
    response = client.post(reverse("login"), {"username": "heron", "password": "nope"})
    assert response.status_code == 200
    assert "form-errors" in response.content.decode()
    assert logged_in_user_id(client) is None


def test_logout_is_a_post_form_and_logs_out(client, make_user):
    client.force_login(make_user())
    page = client.get("/").content.decode()
    assert re.search(
        rf'<form method="post" action="{re.escape(reverse("logout"))}"', page
    )
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert response["Location"] == reverse("login")
    assert logged_in_user_id(client) is None
    assert client.get("/").status_code == 302


def test_logged_out_template_renders():
    from django.template.loader import render_to_string

    assert "Log in again" in render_to_string("registration/logged_out.html")


# ---- passwords ------------------------------------------------------------------


def test_password_change(client, make_user):
    user = make_user("heron")
    client.force_login(user)
    page = client.get(reverse("password_change"))
    assert page.status_code == 200
    assert 'name="old_password"' in page.content.decode()
    response = client.post(
        reverse("password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        },
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("password_change_done")
    assert client.get(response["Location"]).status_code == 200
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


def test_password_change_needs_login(client):
    response = client.get(reverse("password_change"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_password_reset_by_email(client, make_user, settings):
    settings.EMAIL_CONFIGURED = True  # pytest-django's locmem backend stands in for the server
    user = make_user("heron", email="heron@example.com")
    assert client.get(reverse("password_reset")).status_code == 200
    response = client.post(reverse("password_reset"), {"email": "heron@example.com"})
    assert response.status_code == 302
    assert response["Location"] == reverse("password_reset_done")
    assert client.get(response["Location"]).status_code == 200

    assert len(mail.outbox) == 1
    email = mail.outbox[0]
    assert email.to == ["heron@example.com"]
    assert "GPTalk" in email.subject and "\n" not in email.subject
    assert "heron" in email.body
    link = re.search(r"https?://[^/\s]+(/accounts/reset/\S+/)", email.body).group(1)

    # Django redirects the token URL to a session-bound "set-password" URL.
    confirm = client.get(link, follow=True)
    assert confirm.status_code == 200
    assert confirm.context["validlink"] is True
    set_url = confirm.redirect_chain[-1][0]
    done = client.post(
        set_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert done.status_code == 302
    assert done["Location"] == reverse("password_reset_complete")
    assert client.get(done["Location"]).status_code == 200
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


def test_password_reset_unknown_email_sends_nothing_but_looks_the_same(client, settings):
    settings.EMAIL_CONFIGURED = True
    response = client.post(reverse("password_reset"), {"email": "nobody@example.com"})
    assert response.status_code == 302
    assert response["Location"] == reverse("password_reset_done")
    assert mail.outbox == []


def test_invalid_reset_link_says_so(client):
    response = client.get(reverse("password_reset_confirm", args=["MQ", "bad-token"]))
    assert response.status_code == 200
    assert response.context["validlink"] is False
    assert reverse("password_reset") in response.content.decode()
