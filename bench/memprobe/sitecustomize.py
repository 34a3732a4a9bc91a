"""Bench-only memory probe, loaded into the site process by bench/soak.py --probe.

Python imports `sitecustomize` at start-up from PYTHONPATH; bench/soak.py puts
this directory there (for the daphne process only) together with
BENCH_TRACEMALLOC_DIR. Without that variable this module does nothing.

    SIGUSR1  gc.collect(), then write to $BENCH_TRACEMALLOC_DIR/probe-<n>.json:
             RSS, gc object counts by type, channel-layer sizes, asyncio tasks,
             Django DB connections, and (when tracemalloc is on, e.g.
             PYTHONTRACEMALLOC=25) a snapshot probe-<n>.tracemalloc.
    SIGUSR2  glibc malloc_trim(0), then the same as SIGUSR1: whatever RSS it
             gives back was free memory the allocator kept, not live objects.

Handlers run in the main thread (daphne's reactor loop) between bytecodes.
"""

from __future__ import annotations

import os

_DIR = os.environ.get("BENCH_TRACEMALLOC_DIR")


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def _probe(trim: bool) -> None:
    import collections
    import gc
    import json
    import sys
    import threading
    import time
    import tracemalloc

    global _count
    _count += 1
    n = _count
    started = time.monotonic()
    out: dict = {"n": n, "rss_kb_before_collect": _rss_kb()}
    out["gc_collected"] = gc.collect()
    out["rss_kb_after_collect"] = _rss_kb()
    if gc.get_debug() & gc.DEBUG_SAVEALL:
        # BENCH_GC_SAVEALL=1: what the cyclic collector found since the last probe.
        out["garbage"] = len(gc.garbage)
        out["garbage_counts"] = dict(collections.Counter(
            f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage
        ).most_common(60))
        out["garbage_samples"] = _garbage_samples(gc.garbage)
        # Free them for real (else the next collection saves them again).
        gc.set_debug(0)
        gc.garbage.clear()
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
    if trim:
        import ctypes

        try:
            out["malloc_trim"] = ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError as exc:
            out["malloc_trim"] = repr(exc)
        out["rss_kb_after_trim"] = _rss_kb()
    out["malloc"] = _mallinfo()
    out["pymalloc"] = _pymalloc_stats()
    objects = gc.get_objects()
    counts = collections.Counter(
        f"{type(o).__module__}.{type(o).__qualname__}" for o in objects
    )
    out["gc_objects"] = len(objects)
    out["gc_counts"] = dict(counts.most_common())
    out["allocated_blocks"] = sys.getallocatedblocks()
    out["threads"] = [t.name for t in threading.enumerate()]
    out["modules"] = sorted(sys.modules)
    # The channel layer's dicts.
    try:
        from channels.layers import channel_layers

        layers = {}
        for alias, layer in channel_layers.backends.items():
            info = {"class": type(layer).__qualname__}
            if hasattr(layer, "channels") and isinstance(layer.channels, dict):
                info["channels"] = len(layer.channels)
                info["queued"] = sum(q.qsize() for q in layer.channels.values())
            if hasattr(layer, "groups") and isinstance(layer.groups, dict):
                info["groups"] = len(layer.groups)
                info["group_members"] = sum(len(m) for m in layer.groups.values())
            layers[alias] = info
        out["layers"] = layers
    except Exception as exc:  # noqa: BLE001 - a probe reports, never breaks the site
        out["layers"] = repr(exc)
    # asyncio tasks of every loop (found through gc: the reactor owns the loop).
    try:
        import asyncio

        # type(), not isinstance(): isinstance reads __class__, which executes a
        # module that autobahn registers lazily (flatbuffers, then numpy: +8 MB).
        tasks = [o for o in objects if issubclass(type(o), asyncio.Task)]
        out["tasks"] = len(tasks)
        out["tasks_pending"] = sum(not t.done() for t in tasks)
        out["task_names"] = dict(collections.Counter(
            (t.get_coro().__qualname__ if t.get_coro() is not None else "?") for t in tasks if not t.done()
        ).most_common(20))
    except Exception as exc:  # noqa: BLE001
        out["tasks"] = repr(exc)
    try:
        from django.db import connections

        out["db_connections"] = {
            alias: sum(1 for o in objects if type(o).__name__ == "DatabaseWrapper")
            for alias in connections
        }
    except Exception as exc:  # noqa: BLE001
        out["db_connections"] = repr(exc)
    del objects
    if tracemalloc.is_tracing():
        snapshot = tracemalloc.take_snapshot()
        snapshot.dump(os.path.join(_DIR, f"probe-{n}.tracemalloc"))
        out["traced_kb"] = tracemalloc.get_traced_memory()[0] // 1024
    out["seconds"] = round(time.monotonic() - started, 2)
    path = os.path.join(_DIR, f"probe-{n}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(out, f, indent=1)
    os.replace(path + ".tmp", path)  # the bench waits for this file


def _mallinfo() -> dict:
    """glibc's heap: `arena` (sbrk'd), `hblkhd` (mmapped by malloc), in use, free (KiB)."""
    import ctypes

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = Mallinfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError) as exc:
        return {"error": repr(exc)}
    return {"arena_kb": info.arena // 1024, "mmap_kb": info.hblkhd // 1024,
            "in_use_kb": info.uordblks // 1024, "free_kb": info.fordblks // 1024}


def _pymalloc_stats() -> dict:
    """pymalloc's arenas (sys._debugmallocstats, written to fd 2: captured through a pipe)."""
    import re
    import sys

    r, w = os.pipe()
    saved = os.dup(2)
    try:
        sys.stderr.flush()
        os.dup2(w, 2)
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(w)
    chunks = []
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    text = b"".join(chunks).decode(errors="replace")
    out = {}
    for key, pattern in (("arenas_current", r"# arenas allocated current\s*=\s*([\d,]+)"),
                         ("arenas_highwater", r"# arenas highwater mark\s*=\s*([\d,]+)"),
                         ("arenas_total", r"# arenas allocated total\s*=\s*([\d,]+)"),
                         ("bytes_in_blocks", r"# bytes in allocated blocks\s*=\s*([\d,]+)"),
                         ("bytes_free_in_pools", r"# bytes in available blocks\s*=\s*([\d,]+)"),
                         ("bytes_empty_pools", r"\d+ unused pools \* \d+ bytes\s*=\s*([\d,]+)"),
                         ("bytes_arenas_total", r"Total\s*=\s*([\d,]+)")):
        m = re.search(pattern, text)
        if m:
            out[key] = int(m.group(1).replace(",", ""))
    return out


def _garbage_samples(garbage: list) -> dict:
    """A few representative objects of the garbage: exceptions, coroutines, frames, instances."""
    import types

    samples: dict = {}
    for o in garbage:
        t = type(o)
        key = f"{t.__module__}.{t.__qualname__}"
        if len(samples.get(key, ())) >= 3:
            continue
        if issubclass(t, BaseException):
            text = repr(o)[:200]
        elif t is types.FrameType:
            text = f"{o.f_code.co_filename}:{o.f_lineno} {o.f_code.co_qualname}"
        elif t is types.CoroutineType:
            text = o.__qualname__
        elif t.__module__.startswith(("chat", "channels", "daphne", "autobahn", "twisted", "asgiref")):
            text = object.__repr__(o)
        else:
            continue
        samples.setdefault(key, []).append(text)
    return samples


_count = 0

if _DIR:
    import signal

    os.makedirs(_DIR, exist_ok=True)
    signal.signal(signal.SIGUSR1, lambda signum, frame: _probe(trim=False))
    signal.signal(signal.SIGUSR2, lambda signum, frame: _probe(trim=True))
    if os.environ.get("BENCH_GC_SAVEALL"):
        import gc

        gc.set_debug(gc.DEBUG_SAVEALL)

# BENCH_TRACE_IMPORT=mod: print (stderr) the stack that first imports `mod`, to
# find what loads a module late (after the warm-up) and so moves RSS mid-soak.
_TRACE_IMPORT = os.environ.get("BENCH_TRACE_IMPORT")
if _TRACE_IMPORT:
    import sys

    class _TraceImport:
        def find_spec(self, name, path=None, target=None):
            if name == _TRACE_IMPORT:
                import traceback

                sys.stderr.write(f"BENCH_TRACE_IMPORT {name} imported from:\n")
                traceback.print_stack(file=sys.stderr)
                sys.meta_path.remove(self)
            return None

    sys.meta_path.insert(0, _TraceImport())
