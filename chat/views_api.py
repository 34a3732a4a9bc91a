"""JSON endpoints under /api/ for the logged-in browser (the model picker reads them)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from chat.providers.registry import models_offered


@require_GET
@login_required
async def models_list(request: HttpRequest) -> JsonResponse:
    """GET /api/models/: `[{"id", "provider", "name"}]` of the enabled providers, the
    default first. Ids are what chat.send's `model` takes. Never a URL or a key."""
    offered = await models_offered()
    response = JsonResponse([model.as_dict() for model in offered], safe=False)
    response["Cache-Control"] = "private, max-age=30"
    return response
