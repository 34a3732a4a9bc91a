"""Forms for the pages a person uses (sign-up; Django auth supplies the rest)."""

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm
from django.utils.translation import gettext_lazy as _


class SignupForm(UserCreationForm):
    """UserCreationForm plus an optional e-mail address, used only for password resets."""

    email = forms.EmailField(
        label=_("Email (optional)"),
        required=False,
        help_text=_("Only used to reset your password if you forget it."),
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].widget.attrs.update(
            {"autocomplete": "username", "autocapitalize": "none", "autofocus": True}
        )


class AccountSettingsForm(forms.Form):
    """The defaults of new chats, on the account page. `models` are the ids the
    model picker offers; a saved model that is no longer offered stays selectable
    so that saving the instructions does not silently change it."""

    default_model = forms.ChoiceField(label=_("Default model"), required=False)
    custom_instructions = forms.CharField(
        label=_("Custom instructions"),
        required=False,
        max_length=20_000,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text=_(
            "Sent as the system prompt of every new chat (you can still change it per chat). "
            "Chats you already have keep theirs."
        ),
    )

    def __init__(self, *args, models: list[tuple[str, str]], current: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        choices = [("", _("The site's default"))] + list(models)
        if current and current not in {value for value, _label in choices}:
            choices.append((current, current))
        self.fields["default_model"].choices = choices


class PasswordConfirmForm(forms.Form):
    """Asks for the current password before something that cannot be undone."""

    password = forms.CharField(
        label=_("Your password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise forms.ValidationError(_("That is not your password."), code="password_incorrect")
        return password


class EmailChangeForm(PasswordConfirmForm):
    """The address password resets go to (blank: none), on the account page.
    The current password first: whoever holds a session must not be able to
    point the account's resets at an inbox of theirs."""

    email = forms.EmailField(
        label=_("Email (optional)"),
        required=False,
        help_text=_("Only used to reset your password if you forget it."),
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    field_order = ["email", "password"]
