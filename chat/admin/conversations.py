"""Conversations in the admin: find them, read their transcript, export them.

History is read-only here: staff cannot add or edit a conversation (that would
silently change a user's future answers); superusers may delete. Every reading
of another user's transcript is recorded (chat.services.audit).
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from chat.admin.export import conversations_export_response
from chat.models import Conversation, Message
from chat.selectors.transcript import transcript_page
from chat.services.audit import transcript_views_record


class OwnerFilter(admin.SimpleListFilter):
    """By owner, without listing every user (that does not scale): the owner is
    chosen from the user's page ("Conversations") or by searching for a user
    name; the filter then shows who is selected."""

    title = "owner"
    parameter_name = "owner__id__exact"

    def lookups(self, request, model_admin):
        value = self.value()
        if not value or not value.isdigit():
            return ()
        owner = Conversation._meta.get_field("owner").related_model.objects.filter(pk=value).first()
        return ((value, owner.get_username()),) if owner else ()

    def queryset(self, request, queryset):
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(owner_id=value)
        return queryset


class ServedByFilter(admin.SimpleListFilter):
    """Conversations with an answer written by a given model (a "<provider>/<model>" id)."""

    title = "model that answered"
    parameter_name = "model"

    def lookups(self, request, model_admin):
        models = (
            Message.objects.filter(role=Message.Role.ASSISTANT).exclude(model="")
            .values_list("model", flat=True).distinct().order_by("model")
        )  # fmt: skip
        return [(name, name) for name in models]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(messages__model=self.value()).distinct()
        return queryset


class ProviderFilter(admin.SimpleListFilter):
    title = "provider"
    parameter_name = "provider"

    def lookups(self, request, model_admin):
        names = (
            Message.objects.exclude(provider="").values_list("provider", flat=True).distinct().order_by("provider")
        )
        return [(name, name) for name in names]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(messages__provider=self.value()).distinct()
        return queryset


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("title_or_id", "owner", "model", "message_count", "pinned", "updated_at", "transcript_link")
    list_display_links = None
    list_filter = (OwnerFilter, ServedByFilter, ProviderFilter, "messages__status", "updated_at", "pinned")
    search_fields = ("title", "system_prompt", "messages__content", "owner__username")
    search_help_text = "Searches titles, system prompts, message text and owners' user names."
    date_hierarchy = "updated_at"
    list_select_related = ("owner",)
    list_per_page = 50
    actions = ("export_conversations",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(message_count=Count("messages", distinct=True))

    # -- read-only history ----------------------------------------------------

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    # -- columns --------------------------------------------------------------

    @admin.display(description="Title", ordering="title")
    def title_or_id(self, obj: Conversation) -> str:
        return str(obj)

    @admin.display(description="Messages", ordering="message_count")
    def message_count(self, obj: Conversation) -> int:
        return obj.message_count

    @admin.display(description="Transcript")
    def transcript_link(self, obj: Conversation) -> str:
        url = reverse("admin:chat_conversation_transcript", args=[obj.pk])
        return format_html('<a href="{}">Read</a>', url)

    # -- the transcript -------------------------------------------------------

    def get_urls(self):
        return [
            path(
                "<int:object_id>/transcript/",
                self.admin_site.admin_view(self.transcript_view),
                name="chat_conversation_transcript",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """There is nothing to edit: a conversation's page is its transcript."""
        if not object_id.isdigit():
            return super().change_view(request, object_id, form_url, extra_context)
        return HttpResponseRedirect(reverse("admin:chat_conversation_transcript", args=[object_id]))

    def transcript_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        conversation = get_object_or_404(Conversation.objects.select_related("owner"), pk=object_id)
        if not self.has_view_permission(request, conversation):
            return HttpResponse(status=403)
        page = transcript_page(conversation=conversation, page=request.GET.get("page"))
        transcript_views_record(viewer=request.user, conversations=[conversation])
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": str(conversation),
            "conversation": conversation,
            "page": page,
            "page_range": page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1),
            "texts": [
                {"id": entry.message.pk, "role": entry.message.role, "content": entry.content}
                for entry in page.object_list
            ],
            "has_delete_permission": self.has_delete_permission(request, conversation),
        }
        return TemplateResponse(request, "admin/chat/conversation/transcript.html", context)

    # -- export ---------------------------------------------------------------

    @admin.action(description="Export the selected conversations (JSON and Markdown, in a zip)")
    def export_conversations(self, request, queryset) -> HttpResponse:
        conversations = list(queryset.select_related("owner").order_by("pk"))
        transcript_views_record(viewer=request.user, conversations=conversations, action="export")
        return conversations_export_response(conversations=conversations)
