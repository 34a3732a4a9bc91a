"""Password reset that tells the truth: it says "sent" only once the mail
server took the mail, asks to see an administrator when the site has no mail
server, and a completed reset lifts a login lock-out.

For an address with no account the answer is the same as for one with an
account, as long as the mail server answers: the connection is opened before
the address is looked up, so a server that is down fails both alike.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.forms import PasswordResetForm
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import EmailMultiAlternatives, get_connection
from django.http import HttpRequest, HttpResponse
from django.template import loader
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.translation import gettext as _

from chat.services.accounts import login_lockout_lift

logger = logging.getLogger(__name__)


class MailNotSent(Exception):
    """The mail server refused or could not be reached; nothing was sent."""


class HonestPasswordResetForm(PasswordResetForm):
    """Django's form, but a mail that could not be sent raises MailNotSent
    (Django's own logs the failure and carries on as if it had been sent)."""

    connection = None

    def save(self, **kwargs) -> None:
        connection = get_connection(fail_silently=False)
        try:
            connection.open()
            self.connection = connection
            super().save(**kwargs)
        except OSError as exc:  # smtplib.SMTPException is an OSError, as is a refused connection
            logger.warning("password reset mail not sent: %s: %s", type(exc).__name__, exc)
            raise MailNotSent from exc
        finally:
            self.connection = None
            connection.close()

    def send_mail(
        self, subject_template_name, email_template_name, context, from_email, to_email,
        html_email_template_name=None,
    ) -> None:
        subject = "".join(loader.render_to_string(subject_template_name, context).splitlines())
        body = loader.render_to_string(email_template_name, context)
        message = EmailMultiAlternatives(subject, body, from_email, [to_email], connection=self.connection)
        message.send()


class PasswordResetView(auth_views.PasswordResetView):
    """/accounts/password_reset/: by mail when the site can send mail
    (settings.EMAIL_CONFIGURED), else a page that says to ask an administrator."""

    form_class = HonestPasswordResetForm

    def get_context_data(self, **kwargs) -> dict:
        return super().get_context_data(email_configured=settings.EMAIL_CONFIGURED, **kwargs)

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not settings.EMAIL_CONFIGURED:
            return self.get(request, *args, **kwargs)
        return super().post(request, *args, **kwargs)

    def form_valid(self, form) -> HttpResponse:
        try:
            return super().form_valid(form)
        except MailNotSent:
            form.add_error(
                None,
                _(
                    "The email could not be sent: the mail server did not accept it. "
                    "Nothing is on its way. Try again later, or ask an administrator for a reset link."
                ),
            )
            response = self.form_invalid(form)
            response.status_code = 503
            return response


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """The page behind a reset link; setting the password also ends a lock-out,
    which otherwise keeps refusing even the new password for its full wait."""

    def form_valid(self, form) -> HttpResponse:
        response = super().form_valid(form)
        login_lockout_lift(user=form.user)
        return response


def password_reset_link_make(*, user: AbstractBaseUser, request: HttpRequest) -> str:
    """A reset link for `user` as the reset mail would carry it, for staff to
    hand over when the site sends no mail. It works once: setting a password
    changes what the token was made from."""
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    path = reverse("password_reset_confirm", kwargs={"uidb64": uid, "token": token})
    return request.build_absolute_uri(path)
