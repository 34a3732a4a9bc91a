"""The usage page: answers, characters and tokens per user, per day and per model,
each user's daily quota against their limit, a chart, and a CSV download."""

from __future__ import annotations

import csv
import datetime as dt
from urllib.parse import urlencode

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.urls import path

from chat.admin.usage_chart import usage_chart
from chat.models import UsageReport
from chat.selectors.usage import UsageRange, usage_by_day, usage_by_model, usage_by_user, usage_detail

DEFAULT_DAYS = 30
MAX_DAYS = 366
CSV_COLUMNS = (
    "day", "user", "provider", "model", "answers", "prompt_chars", "answer_chars",
    "prompt_tokens", "answer_tokens", "estimated",
)  # fmt: skip


class RangeForm(forms.Form):
    start = forms.DateField(required=False, widget=forms.DateInput(format="%Y-%m-%d", attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(format="%Y-%m-%d", attrs={"type": "date"}))
    user = forms.IntegerField(required=False, widget=forms.HiddenInput)

    def span(self) -> UsageRange:
        """The range asked for; the last DEFAULT_DAYS days (UTC) by default."""
        today = dt.datetime.now(dt.UTC).date()
        data = self.cleaned_data if self.is_valid() else {}
        end = data.get("end") or today
        start = data.get("start") or end - dt.timedelta(days=DEFAULT_DAYS - 1)
        if start > end:
            start, end = end, start
        start = max(start, end - dt.timedelta(days=MAX_DAYS - 1))
        return UsageRange(start=start, end=end, user_id=data.get("user"))


def _cell(value) -> str:
    """A CSV cell a spreadsheet will not run as a formula (a model name is free text)."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@admin.register(UsageReport)
class UsageReportAdmin(admin.ModelAdmin):
    """Not a list of rows: its list page is the usage report."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_urls(self):
        # Only the report: no page of a single answer here (messages have their own).
        name = f"{self.opts.app_label}_{self.opts.model_name}_changelist"
        return [path("", self.admin_site.admin_view(self.changelist_view), name=name)]

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        form = RangeForm(request.GET)
        span = form.span()
        if request.GET.get("format") == "csv":
            return self._csv(span)
        days = usage_by_day(span=span)
        user = get_user_model().objects.filter(pk=span.user_id).first() if span.user_id else None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Usage",
            # The form shows the range used, defaults included.
            "form": RangeForm(initial={"start": span.start, "end": span.end, "user": span.user_id}),
            "span": span,
            "selected_user": user,
            "users": usage_by_user(span=span),
            "days": days,
            "models": usage_by_model(span=span),
            "totals": {key: sum(day[key] for day in days) for key in days[0] if key != "day"},
            "chart": usage_chart(days=days),
            "csv_query": _query(span, format="csv"),
        }
        return TemplateResponse(request, "admin/chat/usagereport/usage.html", context)

    def _csv(self, span: UsageRange) -> HttpResponse:
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="usage-{span.start}-{span.end}.csv"'
        writer = csv.writer(response)
        writer.writerow(CSV_COLUMNS)
        for row in usage_detail(span=span):
            writer.writerow([
                row["day"].isoformat(), _cell(row["conversation__owner__username"]), _cell(row["provider"]),
                _cell(row["model"]), row["answers"], row["prompt_chars"], row["answer_chars"],
                row["prompt_tokens"], row["answer_tokens"], row["estimated"],
            ])  # fmt: skip
        return response


def _query(span: UsageRange, **extra: str) -> str:
    params = {"start": span.start.isoformat(), "end": span.end.isoformat(), **extra}
    if span.user_id is not None:
        params["user"] = str(span.user_id)
    return urlencode(params)
