"""/accounts/: a person's own account — password, the address for password
resets, defaults of new chats, the export of all their data, and deleting
the account."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from chat.forms import AccountSettingsForm, EmailChangeForm, PasswordConfirmForm
from chat.providers.registry import models_offered
from chat.selectors.accounts import account_settings_get
from chat.services.accounts import (
    account_delete,
    account_email_update,
    account_export_zip,
    account_settings_update,
)


def _model_choices() -> list[tuple[str, str]]:
    offered = async_to_sync(models_offered)()
    return [(m.id, f"{m.name} · {m.provider}" if m.provider not in m.name else m.name) for m in offered]


def _page(
    request: HttpRequest, *, settings_form=None, email_form=None, delete_form=None, status: int = 200
) -> HttpResponse:
    current = account_settings_get(user=request.user)
    if settings_form is None:
        settings_form = AccountSettingsForm(
            models=_model_choices(),
            current=current.default_model,
            initial={
                "default_model": current.default_model,
                "custom_instructions": current.custom_instructions,
            },
        )
    password_form = PasswordChangeForm(user=request.user)
    # Django focuses the old password; on a page of several forms nothing jumps ahead.
    password_form.fields["old_password"].widget.attrs.pop("autofocus", None)
    context = {
        "settings_form": settings_form,
        "password_form": password_form,
        "email_form": email_form
        or EmailChangeForm(user=request.user, prefix="email", initial={"email": request.user.email}),
        "delete_form": delete_form or PasswordConfirmForm(user=request.user, prefix="delete"),
        "conversation_count": request.user.conversations.count(),
    }
    return render(request, "account/account.html", context, status=status)


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
def account(request: HttpRequest) -> HttpResponse:
    """The account page; a POST saves the defaults of new chats."""
    if request.method != "POST":
        return _page(request)
    current = account_settings_get(user=request.user)
    form = AccountSettingsForm(request.POST, models=_model_choices(), current=current.default_model)
    if not form.is_valid():
        return _page(request, settings_form=form, status=400)
    account_settings_update(
        user=request.user,
        default_model=form.cleaned_data["default_model"],
        custom_instructions=form.cleaned_data["custom_instructions"],
    )
    messages.success(request, _("Saved. New chats start with these settings."))
    return redirect("account")


@require_POST
@login_required
def account_email(request: HttpRequest) -> HttpResponse:
    """Change the address password resets go to, once the password is confirmed."""
    form = EmailChangeForm(request.POST, user=request.user, prefix="email")
    if not form.is_valid():
        return _page(request, email_form=form, status=400)
    email = form.cleaned_data["email"]
    account_email_update(user=request.user, email=email)
    if email:
        messages.success(request, _("Saved. Password reset links go to this address."))
    else:
        messages.success(request, _("Removed. If you forget your password, ask an administrator."))
    return redirect("account")


@require_safe
@login_required
def account_export(request: HttpRequest) -> HttpResponse:
    """Every conversation (Markdown and JSON) and the account settings, one zip download."""
    body = account_export_zip(user=request.user)
    response = HttpResponse(body, content_type="application/zip")
    stamp = timezone.now().strftime("%Y-%m-%d")
    response["Content-Disposition"] = f'attachment; filename="gptalk-chat-export-{stamp}.zip"'
    response["Cache-Control"] = "private, no-store"
    return response


@require_POST
@login_required
def account_delete_view(request: HttpRequest) -> HttpResponse:
    """Delete the account once the password is confirmed; then the login page says so."""
    form = PasswordConfirmForm(request.POST, user=request.user, prefix="delete")
    if not form.is_valid():
        return _page(request, delete_form=form, status=400)
    account_delete(user=request.user)
    logout(request)
    messages.success(request, _("Your account and all your chats were deleted."))
    return redirect("login")
