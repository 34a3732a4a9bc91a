"""`python manage.py serve`: the whole product in one command, for a laptop and for production.

    python manage.py serve [--host 127.0.0.1] [--port 8000] [--processes N] [--loop uvloop|asyncio]

The command binds the listening sockets itself and runs N daphne processes on
the port (one per core; N > 1 needs REDIS_URL, the channel layer the processes
share). Each process has a socket of its own on the port (SO_REUSEPORT), so the
kernel spreads new connections evenly: on one shared socket, a burst of
connections lands mostly on whichever process wakes first. It supervises them: a process that crashes is started again,
SIGTERM / SIGINT are passed on, and it exits once every process has stopped.
When GPTALK_URL is not set it also starts the built-in GPTalk emulator (unless
one already answers at GPTALK_EMULATOR_URL), so chat works offline.

Each daphne process is this file run as a module (`python -m
chat.management.commands.serve --fd ...`): its event loop policy (uvloop by
default) must be installed before anything imports `daphne.server`, which
installs Twisted's asyncio reactor on a new loop as it is imported, and
Django's app loading imports it (the `daphne` app). In that process:
- at start, the answers' manager starts at once (its sweep marks answers left
  by a dead process interrupted even if no socket ever connects);
- on SIGTERM / SIGINT, every answer it runs is ended (saved with its text,
  marked interrupted, the sockets told) before the server stops.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

logger = logging.getLogger("chat.serve")

LOOPS = ("uvloop", "asyncio")
# How long a stopping process may take to end its answers, and how long the
# supervisor waits for its processes before killing them.
ANSWERS_STOP_TIMEOUT = 10.0
PROCESS_STOP_TIMEOUT = 30.0
# After the answers ended, their last frames (`done`) are queued on the
# sockets: the reactor's shutdown drops connections without flushing them.
FRAMES_DRAIN_SECONDS = 0.3
# A process that dies sooner than this after its start could not start (a bad
# setting, a broken install): the supervisor stops instead of restarting it forever.
START_WINDOW = 10.0


def emulator_healthy(url: str) -> bool:
    try:
        response = httpx.get(f"{url}/_emulator/health", timeout=0.5, trust_env=False)
        return response.status_code == 200 and response.json() == {"ok": True}
    except (httpx.HTTPError, ValueError):
        return False


class Command(BaseCommand):
    help = (
        "Run the chat site: N daphne processes on one listening socket, with the "
        "built-in GPTalk emulator unless GPTALK_URL is set."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="IPv4 address to listen on.")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--processes", type=int, default=1,
            help="daphne processes sharing the socket (one per core); more than 1 needs REDIS_URL.",
        )
        parser.add_argument("--loop", choices=LOOPS, default="uvloop", help="The event loop (default uvloop).")

    def handle(self, *args, host: str, port: int, processes: int, loop: str, **options) -> None:
        if processes < 1:
            raise CommandError("--processes must be at least 1.")
        if processes > 1 and not settings.REDIS_URL:
            raise CommandError(
                f"--processes {processes} needs REDIS_URL: the processes share answers through "
                "Redis (the in-memory channel layer lives inside one process). Set REDIS_URL, "
                "e.g. redis://127.0.0.1:6379/0, or run one process."
            )
        if loop == "uvloop":
            try:
                import uvloop  # noqa: F401
            except ImportError:
                raise CommandError(
                    "uvloop is not installed: pip install -r requirements.txt, or --loop asyncio."
                ) from None
        try:
            listeners = [
                socket.create_server((host, port), family=socket.AF_INET, backlog=4096, reuse_port=processes > 1)
                for _ in range(processes)
            ]
        except OSError as exc:
            raise CommandError(f"Cannot listen on {host}:{port}: {exc}") from None
        for listener in listeners:
            listener.set_inheritable(True)
        emulator = self.start_emulator() if settings.GPTALK_USE_BUILTIN_EMULATOR else None
        self.stdout.write(
            f"GPTalk Chat on http://{host}:{port}/  ({processes} process(es), {loop} loop; "
            f"upstream: {settings.GPTALK_URL})"
        )
        self.stdout.flush()
        supervisor = Supervisor(listeners=listeners, loop=loop)
        try:
            supervisor.run()
        finally:
            for listener in listeners:
                listener.close()
            if emulator is not None:
                emulator.terminate()
                emulator.wait(timeout=10)
        if supervisor.failed:
            raise CommandError("A daphne process could not start (see above).")

    def start_emulator(self) -> subprocess.Popen | None:
        url = settings.GPTALK_EMULATOR_URL
        if emulator_healthy(url):
            self.stdout.write(f"Using the GPTalk emulator already running at {url}")
            return None
        address = urlsplit(url)
        process = subprocess.Popen(
            [sys.executable, "manage.py", "gptalk_emulator",
             "--host", address.hostname or "127.0.0.1", "--port", str(address.port or 80)],
            cwd=settings.BASE_DIR,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if emulator_healthy(url):
                return process
            if process.poll() is not None:
                raise CommandError("The built-in GPTalk emulator failed to start (see above).")
            time.sleep(0.1)
        process.terminate()
        raise CommandError(f"The built-in GPTalk emulator did not answer at {url}.")


class Supervisor:
    """Runs the daphne processes, restarts one that dies, passes on stop signals."""

    def __init__(self, *, listeners: list[socket.socket], loop: str) -> None:
        self.listeners = listeners  # one per process slot; a restarted process takes its slot's
        self.count = len(listeners)
        self.loop = loop
        self.children: dict[int, tuple[subprocess.Popen, float]] = {}
        self.stopping = False
        self.failed = False

    def spawn(self, slot: int) -> None:
        if self.stopping:  # a signal came while the processes were being started
            return
        fd = self.listeners[slot].fileno()
        process = subprocess.Popen(
            [sys.executable, "-m", "chat.management.commands.serve",
             "--fd", str(fd), "--loop", self.loop, "--parent", str(os.getpid())],
            cwd=settings.BASE_DIR,
            pass_fds=(fd,),
        )
        self.children[slot] = (process, time.monotonic())

    def forward(self, signum: int, frame) -> None:
        self.stopping = True
        for process, _ in self.children.values():
            if process.poll() is None:
                process.send_signal(signum)

    def run(self) -> None:
        previous = {sig: signal.signal(sig, self.forward) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in range(self.count):
                self.spawn(slot)
            self.supervise()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def supervise(self) -> None:
        stop_deadline = None
        while self.children:
            for slot, (process, started) in list(self.children.items()):
                if process.poll() is None:
                    continue
                del self.children[slot]
                if self.stopping:
                    continue
                # Killed by a signal (a crash, the OOM killer): start another. Exited
                # by itself right after its start: it cannot start, do not spin.
                if process.returncode > 0 and time.monotonic() - started < START_WINDOW:
                    logger.error(
                        "daphne process %s could not start (exit %s); stopping", process.pid, process.returncode
                    )
                    self.forward(signal.SIGTERM, None)
                    self.failed = True
                    continue
                logger.error("daphne process %s exited with %s; starting another", process.pid, process.returncode)
                self.spawn(slot)
            if self.stopping:
                stop_deadline = stop_deadline or time.monotonic() + PROCESS_STOP_TIMEOUT
                if time.monotonic() > stop_deadline:
                    for process, _ in self.children.values():
                        process.kill()
            time.sleep(0.1)


# ---- one daphne process (this file run as a module) ---------------------------


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this process when the supervisor dies (even by SIGKILL),
    so no process keeps serving on a socket nobody supervises (Linux prctl)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import ctypes.util

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the prctl
        os._exit(1)


def install_loop(name: str) -> None:
    """Must run before `daphne.server` is imported (it creates the reactor's loop)."""
    if "daphne.server" in sys.modules:
        raise RuntimeError("daphne.server was imported before the event loop policy was set")
    if name == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


class DaphneProcess:
    """One daphne process on the inherited socket `fd`; `run()` returns when it has stopped."""

    def __init__(self, *, fd: int) -> None:
        import django

        django.setup()
        from twisted.internet import reactor

        from chat import transport

        transport.install()  # sockets send at once when nothing waits to be sent
        self.fd = fd
        self.reactor = reactor
        self.loop = reactor._asyncioEventloop
        self.stopping = False

    def run(self) -> None:
        from asgiref.compatibility import guarantee_single_callable
        from daphne.access import AccessLogGenerator
        from daphne.server import Server

        from gptalk_site.asgi import application

        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.on_signal)
        Server(
            application=guarantee_single_callable(application),
            endpoints=[f"fd:fileno={self.fd}"],
            # Ours above: Twisted's would stop the reactor before the answers end.
            signal_handlers=False,
            action_logger=AccessLogGenerator(sys.stdout),
            proxy_forwarded_address_header="X-Forwarded-For",
            proxy_forwarded_port_header="X-Forwarded-Port",
            proxy_forwarded_proto_header="X-Forwarded-Proto",
            websocket_max_message_size=settings.CHAT_WS_MAX_MESSAGE_CHARS,
            ready_callable=lambda: self.loop.create_task(self.started()),
        ).run()

    async def started(self) -> None:
        """Runs once the reactor runs: the answers' manager (and its sweep) starts
        with the process, not with the first socket."""
        from chat.generation import get_manager

        loop = type(asyncio.get_running_loop())
        logger.info("daphne process %s serving, event loop %s.%s", os.getpid(), loop.__module__, loop.__name__)
        while not self.stopping:
            try:
                await get_manager().ensure_started()
                return
            except Exception:  # e.g. Redis not up yet: try again, the site still serves
                logger.exception("starting the answers' manager failed; retrying in 1 s")
                await asyncio.sleep(1)

    def on_signal(self) -> None:
        if not self.stopping:  # a second Ctrl-C (the terminal and the supervisor both send one)
            self.stopping = True
            logger.info("daphne process %s stopping: ending its answers", os.getpid())
            self.loop.create_task(self.stop())

    async def stop(self) -> None:
        from chat.generation import get_manager

        try:
            await asyncio.wait_for(get_manager().shutdown(), timeout=ANSWERS_STOP_TIMEOUT)
        except Exception:  # the server must stop even if ending the answers failed
            logger.exception("ending the answers of process %s failed", os.getpid())
        await asyncio.sleep(FRAMES_DRAIN_SECONDS)
        self.reactor.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="One daphne process of `manage.py serve`.")
    parser.add_argument("--fd", type=int, required=True, help="the inherited listening socket")
    parser.add_argument("--loop", choices=LOOPS, default="uvloop")
    parser.add_argument("--parent", type=int, required=True, help="the supervisor's pid")
    args = parser.parse_args()
    die_with_parent(args.parent)
    install_loop(args.loop)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gptalk_site.settings")
    DaphneProcess(fd=args.fd).run()


if __name__ == "__main__":
    main()
