"""Plot a sweep: relay latency, time to first delta and throughput against N.

    .venv/bin/python bench/plot.py bench/results/<date>.json   # writes bench/results/<date>.png

Needs matplotlib (bench/requirements.txt). Runs whose answers were not all done
by the deadline are drawn with open markers: their figures are lower bounds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"memory": "tab:blue", "redis": "tab:red", "asyncio": "tab:orange",
          "2 processes": "tab:green", "reference": "black"}


def kind(run: dict) -> str:
    """Which series a run belongs to: its layer on one uvloop process, else what differs."""
    config = run["config"]
    if config.get("processes", 1) > 1:
        return f"{config['processes']} processes"
    if config.get("loop", "uvloop") != "uvloop":
        return config["loop"]
    return config["layer"]


def series(runs: list[dict], layer: str, side: str, getter) -> tuple[list, list, list]:
    xs, ys, finished = [], [], []
    for run in runs:
        if run.get("error") or kind(run) != layer or not run.get(side):
            continue
        value = getter(run[side])
        if value is None:
            continue
        xs.append(run["config"]["streams"])
        ys.append(value)
        site = run.get("site") or {}
        finished.append(side == "reference" or site.get("complete") == site.get("answers"))
    order = sorted(range(len(xs)), key=xs.__getitem__)
    return [xs[i] for i in order], [ys[i] for i in order], [finished[i] for i in order]


def draw(ax, xs, ys, finished, *, color, style, label):
    if not xs:
        return
    ax.plot(xs, ys, style, color=color, label=label, linewidth=1.5)
    for x, y, done in zip(xs, ys, finished):
        ax.plot([x], [y], "o", color=color, markerfacecolor=color if done else "white", markersize=5)


def plot(path: str | Path) -> Path:
    path = Path(path)
    report = json.loads(path.read_text())
    runs = [r for r in report["runs"] if not r.get("error")]
    layers = sorted({kind(r) for r in runs})
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2))
    lat, ttfd, thr = axes

    for layer in layers:
        color = COLORS.get(layer, "tab:green")
        for pct, style in (("p50", "--"), ("p99", "-")):
            draw(lat, *series(runs, layer, "site", lambda s, p=pct: s["latency_ms"][p]),
                 color=color, style=style, label=f"site {layer} {pct}")
        draw(ttfd, *series(runs, layer, "site", lambda s: s["ttfd_ms"]["p50"]),
             color=color, style="-", label=f"site {layer} p50")
        draw(thr, *series(runs, layer, "site", lambda s: s["chars_per_s"]),
             color=color, style="-", label=f"site {layer}")
    ref_layer = "memory" if "memory" in layers else (layers[0] if layers else "memory")
    for pct, style in (("p50", "--"), ("p99", "-")):
        draw(lat, *series(runs, ref_layer, "reference", lambda s, p=pct: s["latency_ms"][p]),
             color=COLORS["reference"], style=style, label=f"reference {pct}")
    draw(ttfd, *series(runs, ref_layer, "reference", lambda s: s["ttfd_ms"]["p50"]),
         color=COLORS["reference"], style="-", label="reference p50")
    draw(thr, *series(runs, ref_layer, "reference", lambda s: s["chars_per_s"]),
         color=COLORS["reference"], style="-", label="reference")

    lat.set_title("relay latency per upstream event (ms)")
    ttfd.set_title("time to first delta (ms)")
    thr.set_title("delivered characters per second")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("concurrent streams N")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    machine = report.get("machine", {})
    fig.suptitle(
        f"GPTalk Chat relay, one daphne process unless named — {machine.get('nproc')} cores, "
        f"{machine.get('cpu_model')}; "
        f"{report.get('name')}. Open markers: not all answers done by the deadline (lower bounds).",
        fontsize=10,
    )
    fig.tight_layout()
    out = path.with_suffix(".png")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(plot(sys.argv[1]))
