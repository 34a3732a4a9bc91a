"""JSON endpoints under /api/ for the logged-in browser: the model picker, the sidebar's pages."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from chat.providers.registry import models_offered
from chat.selectors import InvalidCursor, conversation_page
from chat.serializers import conversation_data


@require_GET
@login_required
async def models_list(request: HttpRequest) -> JsonResponse:
    """GET /api/models/: `[{"id", "provider", "name"}]` of the enabled providers, the
    default first. Ids are what chat.send's `model` takes. Never a URL or a key."""
    offered = await models_offered()
    response = JsonResponse([model.as_dict() for model in offered], safe=False)
    response["Cache-Control"] = "private, max-age=30"
    return response


@require_GET
@login_required
def conversations_list(request: HttpRequest) -> JsonResponse:
    """GET /api/conversations/?before=<cursor>: the next page of the sidebar,
    `{"results": [conversation], "next": cursor or null}`. Only the caller's own."""
    try:
        page = conversation_page(user=request.user, before=request.GET.get("before") or None)
    except InvalidCursor:
        return JsonResponse({"error": "invalid cursor"}, status=400)
    return JsonResponse(
        {"results": [conversation_data(c) for c in page.conversations], "next": page.next_cursor}
    )
