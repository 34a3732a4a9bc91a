"""Conversation management over HTTP: rename, delete, pin, settings (system
prompt, model), share links, export, import and search.

JSON in, JSON out (exports are downloads). POSTs carry Django's CSRF token in
the X-CSRFToken header. Every conversation is fetched with
conversation_get(user=...): someone else's and a missing one are the same 404.
"""

from __future__ import annotations

import json
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from chat import events
from chat.delivery.link import user_tell
from chat.selectors import NotFound, conversation_get, message_list, shared_conversation_get
from chat.selectors.search import conversation_search
from chat.serializers import conversation_data, message_data
from chat.services import conversation_edits
from chat.services import export as export_services
from chat.services.conversation_edits import InvalidInput

JSON_BODY_MAX = 64 * 1024


def _json_body(request: HttpRequest) -> dict:
    if len(request.body) > JSON_BODY_MAX:
        raise InvalidInput(_("The request is too large."))
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        raise InvalidInput(_("The request is not valid JSON.")) from None
    if not isinstance(data, dict):
        raise InvalidInput(_("The request must be a JSON object."))
    return data


def _bad_request(message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=400)


def owned(view):
    """Log-in required; the view gets the caller's conversation instead of its id
    (404 for a missing one or someone else's); InvalidInput becomes a 400."""

    @wraps(view)
    def wrapper(request: HttpRequest, conversation_id: int, *args, **kwargs):
        try:
            conversation = conversation_get(user=request.user, conversation_id=conversation_id)
        except NotFound:
            raise Http404() from None
        try:
            return view(request, conversation, *args, **kwargs)
        except InvalidInput as exc:
            return _bad_request(str(exc))

    return login_required(wrapper)


def _conversation_json(request: HttpRequest, conversation) -> dict:
    data = conversation_data(conversation)
    data.update(
        model=conversation.model,
        system_prompt=conversation.system_prompt,
        share_url=request.build_absolute_uri(reverse("chat:share", args=[conversation.share_token]))
        if conversation.share_token
        else None,
    )
    return data


def _tell_other_tabs(request: HttpRequest, conversation) -> None:
    """Send the changed conversation to every socket of its owner (other tabs, devices)."""
    user_tell(request.user.pk, events.conversation(data=conversation_data(conversation), user=request.user.pk))


# ---- reading and writing one conversation -----------------------------------


@require_GET
@owned
def conversation_detail(request: HttpRequest, conversation) -> JsonResponse:
    return JsonResponse(_conversation_json(request, conversation))


@require_POST
@owned
def conversation_rename(request: HttpRequest, conversation) -> JsonResponse:
    conversation = conversation_edits.conversation_rename(
        conversation=conversation, title=_json_body(request).get("title")
    )
    _tell_other_tabs(request, conversation)
    return JsonResponse(_conversation_json(request, conversation))


@require_POST
@owned
def conversation_pin(request: HttpRequest, conversation) -> JsonResponse:
    conversation = conversation_edits.conversation_pin(
        conversation=conversation, pinned=_json_body(request).get("pinned")
    )
    _tell_other_tabs(request, conversation)
    return JsonResponse(_conversation_json(request, conversation))


@require_POST
@owned
def conversation_delete(request: HttpRequest, conversation) -> JsonResponse:
    conversation_edits.conversation_delete(conversation=conversation)
    return JsonResponse({"deleted": True})


@require_POST
@owned
def conversation_settings(request: HttpRequest, conversation) -> JsonResponse:
    body = _json_body(request)
    conversation = conversation_edits.conversation_configure(
        conversation=conversation,
        system_prompt=body.get("system_prompt"),
        model=body.get("model"),
    )
    return JsonResponse(_conversation_json(request, conversation))


@require_POST
@owned
def conversation_share(request: HttpRequest, conversation) -> JsonResponse:
    return JsonResponse(_conversation_json(request, conversation_edits.conversation_share(conversation=conversation)))


@require_POST
@owned
def conversation_unshare(request: HttpRequest, conversation) -> JsonResponse:
    return JsonResponse(
        _conversation_json(request, conversation_edits.conversation_unshare(conversation=conversation))
    )


@require_GET
@owned
def conversation_export(request: HttpRequest, conversation, fmt: str) -> HttpResponse:
    messages = message_list(conversation=conversation)
    if fmt == "json":
        body = export_services.conversation_export_json(conversation=conversation, messages=messages)
        content_type = "application/json; charset=utf-8"
    else:
        body = export_services.conversation_export_markdown(conversation=conversation, messages=messages)
        content_type = "text/markdown; charset=utf-8"
    response = HttpResponse(body, content_type=content_type)
    filename = export_services.export_filename(conversation, fmt)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


# ---- collections -------------------------------------------------------------


@require_POST
@login_required
def conversation_create(request: HttpRequest) -> JsonResponse:
    """A new empty conversation with a system prompt and/or model, before its first message."""
    try:
        body = _json_body(request)
        conversation = conversation_edits.conversation_create_empty(
            user=request.user,
            system_prompt=body.get("system_prompt") or "",
            model=body.get("model") or "",
        )
    except InvalidInput as exc:
        return _bad_request(str(exc))
    _tell_other_tabs(request, conversation)
    return JsonResponse(_conversation_json(request, conversation), status=201)


@require_POST
@login_required
def conversation_import(request: HttpRequest) -> JsonResponse:
    """Import an export file (multipart field "file"): a new conversation of the caller."""
    upload = request.FILES.get("file")
    if upload is None:
        return _bad_request(_("Choose a JSON export file to import."))
    if upload.size > conversation_edits.IMPORT_MAX_BYTES:
        return _bad_request(_("The file is too large: at most 5 MB."))
    try:
        conversation = conversation_edits.conversation_import(user=request.user, raw=upload.read())
    except InvalidInput as exc:
        return _bad_request(str(exc))
    _tell_other_tabs(request, conversation)
    data = _conversation_json(request, conversation)
    data["url"] = reverse("chat:conversation", args=[conversation.pk])
    return JsonResponse(data, status=201)


@require_GET
@login_required
def search(request: HttpRequest) -> JsonResponse:
    hits = conversation_search(user=request.user, query=request.GET.get("q", ""))
    return JsonResponse(
        {
            "results": [
                {**conversation_data(hit.conversation), "snippet": hit.snippet} for hit in hits
            ]
        }
    )


# ---- the public read-only page -------------------------------------------------


@require_GET
def shared(request: HttpRequest, token: str) -> HttpResponse:
    """/s/<token>/: read-only, no login; 404 once the owner revoked the link."""
    conversation = shared_conversation_get(token=token)
    if conversation is None:
        raise Http404()
    messages = export_services.newest_branch(messages=message_list(conversation=conversation))
    response = render(
        request,
        "chat/shared.html",
        {
            "conversation": conversation,
            "messages_data": [message_data(m) for m in messages if m.role != "system"],
            "share_config": {"strings": {"copy": _("Copy"), "copyCode": _("Copy code"), "copied": _("Copied")}},
        },
    )
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "private, no-store"
    return response
