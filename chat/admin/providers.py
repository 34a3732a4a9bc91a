"""Providers: the upstreams that write answers, configured by staff."""

import asyncio

from asgiref.sync import async_to_sync
from django import forms
from django.contrib import admin, messages
from django.db import models

from chat.models import Provider
from chat.providers.registry import provider_from_row
from chat.upstream.errors import UpstreamError

# Local servers (Ollama, vLLM, llama.cpp) are usually plain http: a URL typed without
# a scheme gets http://, not Django 6's https://.
URL_FIELD_OPTIONS = {"assume_scheme": "http"}


def _formfield(field, **kwargs):
    if isinstance(field, models.URLField):
        kwargs = {**URL_FIELD_OPTIONS, **kwargs}
    return field.formfield(**kwargs)


class ProviderForm(forms.ModelForm):
    """The API key is write-only: never rendered back; left blank, the stored one stays."""

    api_key = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: it is never shown again. Leave blank to keep the stored key.",
    )
    clear_api_key = forms.BooleanField(required=False, label="Remove the stored key")

    class Meta:
        model = Provider
        fields = ("name", "kind", "base_url", "api_key", "default_model", "enabled", "order")
        formfield_callback = _formfield
        help_texts = {
            "base_url": "OpenAI-compatible: the URL ending in /v1, e.g. http://127.0.0.1:11434/v1 "
            "for Ollama. GPTalk: empty means the GPTALK_URL setting.",
            "default_model": "Empty: GPTalk's gpt-3.5-turbo, or the first model an "
            "OpenAI-compatible server lists.",
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Not even the form's initial data holds the key.
        self.initial["api_key"] = ""

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if "/" in name:
            raise forms.ValidationError(
                'A provider name cannot contain "/": model ids are "<provider>/<model>".'
            )
        return name

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("kind") == Provider.Kind.OPENAI and not cleaned.get("base_url"):
            self.add_error("base_url", "An OpenAI-compatible provider needs its base URL.")
        if cleaned.get("clear_api_key"):
            cleaned["api_key"] = ""
        elif not cleaned.get("api_key") and self.instance.pk:
            cleaned["api_key"] = self.instance.api_key
        return cleaned


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    formfield_overrides = {models.URLField: URL_FIELD_OPTIONS}
    list_display = ("name", "kind", "base_url", "default_model", "has_key", "enabled", "order")
    list_editable = ("enabled", "order")
    list_filter = ("kind", "enabled")
    search_fields = ("name", "base_url", "default_model")
    fields = (
        "name", "kind", "base_url", "api_key", "clear_api_key", "default_model", "enabled", "order",
    )
    actions = ("check_providers",)

    @admin.display(description="Key", boolean=True)
    def has_key(self, obj: Provider) -> bool:
        return bool(obj.api_key)

    @admin.action(description="Check: list the models and whether the provider answers")
    def check_providers(self, request, queryset) -> None:
        """Called with the selected rows; one message per provider, checked all at once."""
        rows = list(queryset)
        results = async_to_sync(_check_all)(rows)
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, UpstreamError):
                text, level = f"{row.name} does not answer: {result.message}", messages.ERROR
            elif result:
                listed = ", ".join(result[:CHECK_LISTED_MODELS])
                hidden = len(result) - CHECK_LISTED_MODELS
                more = f" and {hidden} more" if hidden > 0 else ""
                text, level = f"{row.name} answers. Models: {listed}{more}.", messages.SUCCESS
            else:
                text, level = f"{row.name} answers but lists no model.", messages.WARNING
            self.message_user(request, text, level)


# How many model names one check message shows.
CHECK_LISTED_MODELS = 20
# Seconds a check waits to connect and for each read.
CHECK_TIMEOUT = 10.0


async def _check_all(rows: list[Provider]) -> list[list[str] | UpstreamError]:
    """Check every row at once; each result is its model names or its error."""

    async def check(row: Provider) -> list[str] | UpstreamError:
        try:
            return await provider_from_row(row).check(timeout=CHECK_TIMEOUT)
        except ValueError as exc:  # a row the registry cannot use (no base URL)
            return UpstreamError(str(exc))
        except UpstreamError as exc:
            return exc

    return list(await asyncio.gather(*(check(row) for row in rows)))
