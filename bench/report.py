"""Markdown tables of a sweep (bench/results/<date>.json) for docs/performance.md.

    .venv/bin/python bench/report.py bench/results/<name>.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def fmt(value, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def verdict(met) -> str:
    return "—" if met is None else ("yes" if met else "**no**")


def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


def finished(run: dict) -> bool:
    site = run.get("site") or {}
    return site.get("complete") == site.get("answers")


def glance(runs: list[dict]) -> str:
    """One row per target, one column per run."""
    ok = [r for r in runs if not r.get("error")]
    main_db = ok[0]["config"]["db"] if ok else ""

    def label(r):
        c = r["config"]
        extra = "" if c["db"] == main_db else f" {c['db']}"
        if c.get("processes", 1) > 1:
            extra += f" ×{c['processes']}"
        if c.get("loop", "uvloop") != "uvloop":
            extra += f" {c['loop']}"
        return f"{c['layer']} N={c['streams']}{extra}"

    head = "| target | " + " | ".join(label(r) for r in ok) + " |"
    lines = [head, "|---|" + "---|" * len(ok)]
    figures = [t["figure"] for t in ok[0]["targets"]] if ok else []
    for i, figure in enumerate(figures):
        cells = []
        for r in ok:
            t = r["targets"][i]
            mark = "✓" if t["met"] else ("✗" if t["met"] is False else "·")
            cells.append(f"{fmt(t['value'], 2)} {mark}")
        target = ok[0]["targets"][i]["target"]
        if figure.startswith("DB writes"):
            target = "<= 2 + 1 per s of streaming"
        lines.append(f"| {figure} ({target}) | " + " | ".join(cells) + " |")
    done = [f"{r['site']['complete']}/{r['site']['answers']}" for r in ok]
    lines.append("| answers done by the deadline | " + " | ".join(done) + " |")
    outside = [fmt(r["site"].get("outside_busy_cores"), 2) for r in ok]
    lines.append("| other work on the machine (cores busy) | " + " | ".join(outside) + " |")
    return "\n".join(lines)


def run_table(run: dict) -> str:
    s, r = run.get("site") or {}, run.get("reference") or {}
    sl, rl = s.get("latency_ms") or {}, r.get("latency_ms") or {}
    st, rt = s.get("ttfd_ms") or {}, r.get("ttfd_ms") or {}
    server = s.get("server") or {}
    db = s.get("db_writes") or {}
    targets = {t["figure"]: t for t in run.get("targets", [])}

    def tgt(name):
        t = targets.get(name)
        return (t["target"].replace("<= None", "—"), verdict(t["met"])) if t else ("", "")

    rows = [
        ("relay latency p50 (ms)", sl.get("p50"), rl.get("p50"), "", ""),
        ("relay latency p95 (ms)", sl.get("p95"), rl.get("p95"), "", ""),
        ("relay latency p99 (ms)", sl.get("p99"), rl.get("p99"), *tgt("relay p99 minus reference p99 (ms)")),
        ("relay latency max (ms)", sl.get("max"), rl.get("max"), "", ""),
        ("time to first delta p50 (ms)", st.get("p50"), rt.get("p50"), "", ""),
        ("time to first delta p99 (ms)", st.get("p99"), rt.get("p99"), "", ""),
        ("delivered deltas/s (reference: events/s)", s.get("deltas_per_s"), r.get("events_per_s"), "", ""),
        ("delivered characters/s", s.get("chars_per_s"), r.get("chars_per_s"),
         *tgt("delivered chars/s, site / reference")),
        ("answers/s", s.get("answers_per_s"), r.get("answers_per_s"), "", ""),
        ("wire bytes per answer / answer chars (reference: the upstream's cumulative SSE)",
         s.get("bytes_per_char"), r.get("bytes_per_char"), *tgt("wire bytes per answer / answer chars")),
        ("… of which delta frames", s.get("delta_bytes_per_char"), None, "", ""),
        ("frames per answer", s.get("frames_per_answer"), None, "", ""),
        ("DB writes per answer, all chat rows", db.get("per_answer"), None,
         *tgt("DB writes per answer (all chat rows)")),
        ("DB writes per answer, assistant row", db.get("assistant_message_per_answer"), None,
         *tgt("DB writes per answer (assistant message row)")),
        ("server RSS at start (KiB)", server.get("rss_kb_start"), None, "", ""),
        ("server RSS with N idle sockets (KiB)", server.get("rss_kb_idle"), None, "", ""),
        ("server RSS peak while streaming (KiB)", server.get("rss_kb_peak"), None, "", ""),
        ("server RSS after the sockets closed (KiB)", server.get("rss_kb_closed"), None, "", ""),
        ("RSS per idle socket (KiB)", server.get("rss_kb_per_idle_socket"), None,
         *tgt("RSS per idle socket (KiB)")),
        ("server CPU while streaming (cores; reference: the emulator's)", server.get("cpu_cores"),
         ratio(r.get("emulator_cpu_s"), r.get("wall_s")), "", ""),
        ("other work on the machine during the phase (cores)", s.get("outside_busy_cores"),
         r.get("outside_busy_cores"), "", ""),
        ("CPU pressure at the phase end (PSI some avg10, %)", s.get("cpu_pressure_avg10"),
         r.get("cpu_pressure_avg10"), "", ""),
    ]
    lines = ["| figure | site | reference | ratio | target | met? |", "|---|---|---|---|---|---|"]
    for name, site_value, ref_value, target, met in rows:
        q = ratio(site_value, ref_value) if isinstance(site_value, (int, float)) and "other work" not in name and "pressure" not in name else None
        lines.append(f"| {name} | {fmt(site_value)} | {fmt(ref_value)} | {fmt(q, 2)} | {target} | {met} |")
    return "\n".join(lines)


def markdown(report: dict) -> str:
    runs = report.get("runs", [])
    out = [f"### At a glance ({report.get('name')})", "",
           "Value of each target figure; ✓ met, ✗ missed, · no verdict (the run did not finish).", "",
           glance(runs), ""]
    for run in runs:
        if run.get("error"):
            out += [f"### {run.get('command')}", "", f"failed: {run['error']}", ""]
            continue
        c, s = run["config"], run["site"]
        note = "" if finished(run) else (
            f" — **{s['complete']} of {s['answers']} answers done by the {c.get('deadline_s', '?'):g} s "
            f"deadline; {s['censored_events']:,} events never delivered, counted as lower bounds**")
        out += [f"### {c['layer']} layer, {c['db']}, N = {c['streams']}{note}", "", run_table(run), ""]
    if report.get("linearity"):
        out += ["### Wire bytes against answer length (N = 10, memory layer)", "",
                "| answer chars | wire bytes / char | delta frames bytes / char | frames per answer |",
                "|---|---|---|---|"]
        for run in report["linearity"]:
            if run.get("error"):
                continue
            s = run["site"]
            out.append(f"| {run['config']['reply_chars']} | {fmt(s['bytes_per_char'], 2)} | "
                       f"{fmt(s['delta_bytes_per_char'], 2)} | {fmt(s['frames_per_answer'])} |")
        out.append("")
    if report.get("soak"):
        out += ["### Soak: RSS before and after (target: within 5 %)", "",
                "| layer | part | cycles | failures | RSS before (KiB) | RSS after each round (KiB) | growth | growth, 2nd half | met? |",
                "|---|---|---|---|---|---|---|---|---|"]
        for layer, soak in report["soak"].items():
            if soak.get("error"):
                out.append(f"| {layer} | failed: {soak['error']} | | | | | | | |")
                continue
            for part in ("connect_disconnect", "with_answers"):
                p = soak.get(part)
                if p:
                    rounds = p.get("rss_kb_after_each_round") or [p["rss_kb_after"]]
                    half = p.get("growth_pct_second_half")
                    out.append(f"| {layer} | {part.replace('_', ' ')} | {p['cycles']} | {p['failures']} | "
                               f"{fmt(p['rss_kb_before'])} | {', '.join(fmt(x) for x in rounds)} | "
                               f"{p['growth_pct']:+.1f} % | {'—' if half is None else f'{half:+.1f} %'} | "
                               f"{verdict(p['met'])} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
