"""HTTP pages: the chat shell and sign-up. Everything live happens over /ws/chat/."""

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_safe

from chat.forms import SignupForm
from chat.selectors import NotFound, conversation_get, conversation_page, message_list
from chat.selectors.accounts import account_settings_get
from chat.serializers import message_data


def _ui_strings() -> dict[str, str]:
    """Sentences the JS shows, translated here so the JS carries no UI text."""
    return {
        "newChat": _("New chat"),
        "untitled": _("Untitled chat"),
        "offline": _("Offline — reconnecting…"),
        "connecting": _("Connecting…"),
        "signedOut": _("You were signed out. Log in again to continue."),
        "logIn": _("Log in"),
        "stopped": _("Stopped"),
        "failed": _("Failed"),
        "interrupted": _("Interrupted"),
        "interruptedDetail": _("This answer was cut off before it finished."),
        "failedDetail": _("The answer could not be generated."),
        "retry": _("Retry"),
        "regenerate": _("Regenerate"),
        "copy": _("Copy"),
        "copied": _("Copied"),
        "copyCode": _("Copy code"),
        "send": _("Send"),
        "stop": _("Stop"),
        "notSent": _("Not sent — the connection dropped."),
        "queued": _("Not connected yet — your message will be sent as soon as the connection is back."),
        "sendAgain": _("Send again"),
        "dismiss": _("Dismiss"),
        "previousAnswer": _("Previous answer"),
        "nextAnswer": _("Next answer"),
        "answerOf": _("Answer %(index)s of %(count)s"),
        "tooLong": _("Your message is too long (%(count)s of %(max)s characters)."),
        "errorGeneric": _("Something went wrong."),
        "notFound": _("That conversation no longer exists."),
        "you": _("You"),
        "assistant": _("Assistant"),
        "writing": _("Writing an answer…"),
        "busy": _("An answer is still being written: stop it or wait."),
        "deleteTitle": _("Delete this chat?"),
        "deleteText": _("“%(title)s” and all its messages will be deleted. This cannot be undone."),
        "delete": _("Delete"),
        "renameLabel": _("New name of the chat"),
        "importFailed": _("Import failed: %(error)s"),
        "copyLink": _("Copy link"),
    }


def _management_urls() -> dict[str, str]:
    """URL patterns of the management views for the JS ({id} stands for the conversation)."""
    def pattern(name: str) -> str:
        return reverse(f"chat:{name}", args=[0]).replace("/0/", "/{id}/")

    urls = {
        key: pattern(name)
        for key, name in {
            "detail": "detail", "rename": "rename", "pin": "pin", "delete": "delete",
            "settings": "settings", "share-create": "share-create", "share-revoke": "share-revoke",
            "exportMd": "export-md", "exportJson": "export-json",
        }.items()
    }
    urls.update(
        create=reverse("chat:create"),
        search=reverse("chat:search"),
        models=reverse("api:models"),
    )
    urls["import"] = reverse("chat:import")
    return urls


def _chat_page(request: HttpRequest, *, conversation=None) -> HttpResponse:
    # The sidebar's first page; the rest comes from /api/conversations/ as the list scrolls.
    page = conversation_page(user=request.user)
    conversations = page.conversations
    if conversation and conversation not in conversations:
        conversations = [*conversations, conversation]  # the open chat is always listed
    messages = message_list(conversation=conversation) if conversation else []
    defaults = account_settings_get(user=request.user)
    config = {
        "conversation": conversation.pk if conversation else None,
        "socketPath": "/ws/chat/?v=2",  # compact deltas (docs/websocket-protocol.md)
        "maxChars": settings.CHAT_MAX_MESSAGE_CHARS,
        "indexUrl": reverse("chat:index"),
        "conversationUrl": reverse("chat:conversation", args=[0]).replace(
            "/0/", "/{id}/"
        ),
        "loginUrl": reverse("login"),
        "csrfToken": get_token(request),
        # The account page's defaults, shown on a new chat before its first message.
        "defaultModel": defaults.default_model,
        "defaultInstructions": defaults.custom_instructions,
        "urls": _management_urls(),
        "strings": _ui_strings(),
    }
    context = {
        "conversations": conversations,
        "conversations_next": page.next_cursor,
        "conversation": conversation,
        "messages_data": [message_data(m) for m in messages],
        "chat_config": config,
    }
    return render(request, "chat/index.html", context)


# HEAD as well as GET: uptime checks ask with HEAD.
@require_safe
@login_required
def index(request: HttpRequest) -> HttpResponse:
    """The chat with no conversation open: a new chat starts here."""
    return _chat_page(request)


@require_safe
@login_required
def conversation(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """One of the user's conversations; the same 404 whether missing or someone else's."""
    try:
        found = conversation_get(user=request.user, conversation_id=conversation_id)
    except NotFound:
        raise Http404() from None
    return _chat_page(request, conversation=found)


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    """Create an account, log it in and go to the chat (or ?next=). 404 when sign-up is off."""
    if not settings.SIGNUP_ENABLED:
        raise Http404()
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = ""
    if request.user.is_authenticated:
        return redirect(next_url or "chat:index")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect(next_url or "chat:index")
    return render(request, "registration/signup.html", {"form": form, "next": next_url})


@require_safe
def favicon(request: HttpRequest) -> HttpResponse:
    """/favicon.ico, which browsers and crawlers ask for whatever the page links: the SVG icon."""
    return redirect(static("chat/favicon.svg"))
