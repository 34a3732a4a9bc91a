"""The usage page's chart, drawn on the server as SVG: tokens per day, prompt and
answer stacked. Only numbers and dates go into it (no user text), and the
template escapes them all the same."""

from __future__ import annotations

from dataclasses import dataclass

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 12, 28  # room for the axis labels
TICKS = 4
# At most this many date labels under the bars, whatever the range.
DATE_LABELS = 8


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    prompt_y: float
    prompt_height: float
    answer_y: float
    answer_height: float
    title: str


def _nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 × 10^n at least `value` (at least 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def usage_chart(*, days: list[dict]) -> dict:
    """Geometry for templates/admin/chat/usagereport/chart.svg.html from usage_by_day rows."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = _nice_ceiling(max((d["prompt_tokens"] + d["answer_tokens"] for d in days), default=0))
    slot = plot_w / max(len(days), 1)
    gap = min(4.0, slot * 0.2)
    bars = []
    for index, day in enumerate(days):
        prompt_h = plot_h * day["prompt_tokens"] / top
        answer_h = plot_h * day["answer_tokens"] / top
        base = TOP + plot_h
        bars.append(
            Bar(
                x=round(LEFT + index * slot + gap / 2, 1),
                width=round(max(slot - gap, 1.0), 1),
                prompt_y=round(base - prompt_h, 1),
                prompt_height=round(prompt_h, 1),
                answer_y=round(base - prompt_h - answer_h, 1),
                answer_height=round(answer_h, 1),
                title=(
                    f"{day['day']:%Y-%m-%d}: {day['answers']} answers, "
                    f"{day['prompt_tokens']} prompt + {day['answer_tokens']} answer tokens"
                ),
            )
        )
    every = max(1, -(-len(days) // DATE_LABELS))
    labels = [
        {"x": round(bar.x + bar.width / 2, 1), "text": f"{day['day']:%b %d}"}
        for index, (bar, day) in enumerate(zip(bars, days, strict=True))
        if index % every == 0
    ]
    ticks = [
        {"y": round(TOP + plot_h - plot_h * n / TICKS, 1), "text": f"{top * n // TICKS:,}"}
        for n in range(TICKS + 1)
    ]
    return {
        "width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT,
        "bottom": TOP + plot_h, "label_y": HEIGHT - 8, "bars": bars, "labels": labels, "ticks": ticks,
        "empty": top == 1 and not any(d["answers"] for d in days),
    }  # fmt: skip
