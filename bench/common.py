"""Shared plumbing of the benchmarks: processes, databases, users, /proc readings.

The site and the emulator run as real processes on loopback, started with the
test fixtures' helpers (tests/fixtures/site.py, tests/fixtures/emulator.py).
Everything started here is stopped by `Stack.close()` (also on error and at exit).
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.fixtures.emulator import EmulatorHandle, _wait_until_healthy, free_port  # noqa: E402
from tests.fixtures.site import Browser, SiteProcess, manage, site_env, sqlite_url  # noqa: E402

PASSWORD = "bench-passphrase-not-secret-42"
POSTGRES_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
REDIS_DEFAULT = "redis://127.0.0.1:6379/0"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


# --- /proc readings ------------------------------------------------------------

def rss_kb(pid: int) -> int:
    """Resident set size of a process, in KiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds per thread of a process, keyed "<tid> <comm>"."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[f"{task.name} {comm}"] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def site_pids(site: SiteProcess) -> list[int]:
    """`manage.py serve` and its daphne processes: the site is all of them."""
    return [site.process.pid, *site.children()]


def cpu_seconds_all(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def rss_kb_all(pids: list[int]) -> int:
    return sum(rss_kb(pid) for pid in pids)


def thread_cpu_seconds_all(pids: list[int]) -> dict[str, float]:
    return {f"{pid}/{name}": value for pid in pids for name, value in thread_cpu_seconds(pid).items()}


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat), to spot outside load."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLK_TCK


def loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def cpu_pressure() -> float | None:
    """Share of the last 10 s in which some runnable task waited for a CPU (PSI), in %."""
    try:
        with open("/proc/pressure/cpu") as f:
            return float(f.readline().split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def self_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def machine_info() -> dict:
    model = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        total_kb = int(meminfo.readline().split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "mem_total_gib": round(total_kb / 1024 / 1024, 1),
        "python": sys.version.split()[0],
        "kernel": os.uname().release,
    }


# --- processes -----------------------------------------------------------------

def start_emulator(*, interval_ms: int, chunk_chars: int) -> EmulatorHandle:
    """bench/emulator.py (the stock emulator plus its send log) on a free port."""
    port = free_port()
    stderr = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "bench" / "emulator.py"), "--host", "127.0.0.1",
         "--port", str(port), "--interval-ms", str(interval_ms), "--chunk-chars", str(chunk_chars)],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=stderr,
    )
    handle = EmulatorHandle(f"http://127.0.0.1:{port}", process, stderr)
    try:
        _wait_until_healthy(handle, process)
    except BaseException:
        handle.stop()
        raise RuntimeError(f"the benchmark emulator did not start:\n{handle.output()}") from None
    return handle


@dataclass
class Stack:
    """Emulator + database + site for one run; `close()` undoes all of it."""

    db: str = "sqlite"
    layer: str = "memory"
    redis_url: str = REDIS_DEFAULT
    debug: bool = False
    interval_ms: int = 20
    chunk_chars: int = 4
    extra_env: dict = field(default_factory=dict)

    emulator: EmulatorHandle | None = None
    site: SiteProcess | None = None
    tmpdir: Path | None = None
    database_url: str = ""
    pg_name: str | None = None
    env: dict = field(default_factory=dict)
    _closed: bool = False

    def start(self) -> "Stack":
        atexit.register(self.close)
        # SIGTERM (e.g. a sweep being stopped) unwinds like an error, so `finally` cleans up.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        self.tmpdir = Path(tempfile.mkdtemp(prefix="gptalk-bench-"))
        self.emulator = start_emulator(interval_ms=self.interval_ms, chunk_chars=self.chunk_chars)
        self.database_url = self._database_create()
        extra = {
            "DJANGO_LOG_LEVEL": "WARNING",
            # bench_write_log (below) counts the writes; nothing else may touch the tables.
        }
        if not self.debug:
            extra.update(
                DJANGO_DEBUG="false",
                DJANGO_SECRET_KEY="bench-" + secrets.token_hex(16),
                DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
                DJANGO_SECURE_COOKIES="false",
                DJANGO_SECURE_SSL_REDIRECT="false",
                DJANGO_HSTS_SECONDS="0",
            )
        if self.layer == "redis":
            extra["REDIS_URL"] = self.redis_url
            self._redis_clear()
        elif self.layer != "memory":
            raise ValueError(f"unknown layer {self.layer!r}")
        extra.update(self.extra_env)
        self.env = site_env(database_url=self.database_url, gptalk_url=self.emulator.url, **extra)
        manage("migrate", "--noinput", env=self.env)
        write_log_install(self.db, self.database_url)
        return self

    def start_site(self, *, args: tuple[str, ...] = (), **extra_env: str) -> SiteProcess:
        """`manage.py serve` with `args`; `extra_env` goes to it only (not to manage.py)."""
        self.site = SiteProcess(env={**self.env, **extra_env}, args=args)
        return self.site

    def stop_site(self) -> None:
        if self.site is not None:
            self.site.stop()

    # -- databases --

    def _database_create(self) -> str:
        if self.db == "sqlite":
            return sqlite_url(self.tmpdir / "bench.sqlite3")
        if self.db == "postgres":
            import psycopg

            self.pg_name = f"gptalk_bench_{os.getpid()}_{secrets.token_hex(3)}"
            with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.pg_name}"')
            return f"postgres://postgres@127.0.0.1:5432/{self.pg_name}"
        raise ValueError(f"unknown db {self.db!r}")

    def _database_drop(self) -> None:
        if self.pg_name is None:
            return
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')
        self.pg_name = None

    def _redis_clear(self) -> None:
        """Delete the channel layer's keys (prefix asgi) in the bench's Redis database."""
        import redis

        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=5)
        try:
            keys = list(client.scan_iter(match="asgi*", count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start:start + 500])
        finally:
            client.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for step in (
            lambda: self.site and self.site.stop(),
            lambda: self.emulator and self.emulator.stop(),
            self._database_drop,
            lambda: self.layer == "redis" and self._redis_clear(),
            lambda: self.tmpdir and shutil.rmtree(self.tmpdir, ignore_errors=True),
        ):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - clean up as much as possible
                print(f"bench cleanup: {exc!r}", file=sys.stderr)


# --- DB write counting ---------------------------------------------------------
# Row triggers append one row to bench_write_log per INSERT/UPDATE on the chat
# tables (append-only: no counter row that concurrent writers would fight over).

_SQLITE_TRIGGERS = """
CREATE TABLE IF NOT EXISTS bench_write_log (id INTEGER PRIMARY KEY, tbl TEXT, op TEXT, role TEXT);
CREATE TRIGGER IF NOT EXISTS bench_msg_ins AFTER INSERT ON chat_message BEGIN
  INSERT INTO bench_write_log (tbl, op, role) VALUES ('chat_message', 'insert', NEW.role); END;
CREATE TRIGGER IF NOT EXISTS bench_msg_upd AFTER UPDATE ON chat_message BEGIN
  INSERT INTO bench_write_log (tbl, op, role) VALUES ('chat_message', 'update', NEW.role); END;
CREATE TRIGGER IF NOT EXISTS bench_conv_ins AFTER INSERT ON chat_conversation BEGIN
  INSERT INTO bench_write_log (tbl, op, role) VALUES ('chat_conversation', 'insert', ''); END;
CREATE TRIGGER IF NOT EXISTS bench_conv_upd AFTER UPDATE ON chat_conversation BEGIN
  INSERT INTO bench_write_log (tbl, op, role) VALUES ('chat_conversation', 'update', ''); END;
"""

_PG_TRIGGERS = """
CREATE TABLE IF NOT EXISTS bench_write_log (id bigserial PRIMARY KEY, tbl text, op text, role text);
CREATE OR REPLACE FUNCTION bench_log_message() RETURNS trigger AS $$
BEGIN
  INSERT INTO bench_write_log (tbl, op, role) VALUES ('chat_message', lower(TG_OP), NEW.role);
  RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION bench_log_conversation() RETURNS trigger AS $$
BEGIN
  INSERT INTO bench_write_log (tbl, op, role) VALUES ('chat_conversation', lower(TG_OP), '');
  RETURN NULL;
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS bench_msg ON chat_message;
CREATE TRIGGER bench_msg AFTER INSERT OR UPDATE ON chat_message
  FOR EACH ROW EXECUTE FUNCTION bench_log_message();
DROP TRIGGER IF EXISTS bench_conv ON chat_conversation;
CREATE TRIGGER bench_conv AFTER INSERT OR UPDATE ON chat_conversation
  FOR EACH ROW EXECUTE FUNCTION bench_log_conversation();
"""


def _sqlite_path(database_url: str) -> str:
    return database_url[len("sqlite:///"):]


def write_log_install(db: str, database_url: str) -> None:
    if db == "sqlite":
        import sqlite3

        conn = sqlite3.connect(_sqlite_path(database_url))
        try:
            conn.executescript(_SQLITE_TRIGGERS)
            conn.commit()
        finally:
            conn.close()
    else:
        import psycopg

        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(_PG_TRIGGERS)


def write_log_counts(db: str, database_url: str) -> dict[str, int]:
    """{"chat_message.insert.assistant": n, ...} since the database was made."""
    query = "SELECT tbl, op, role, count(*) FROM bench_write_log GROUP BY tbl, op, role"
    if db == "sqlite":
        import sqlite3

        conn = sqlite3.connect(_sqlite_path(database_url), timeout=30)
        try:
            rows = conn.execute(query).fetchall()
        finally:
            conn.close()
    else:
        import psycopg

        with psycopg.connect(database_url, autocommit=True) as conn:
            rows = conn.execute(query).fetchall()
    return {".".join(filter(None, (t, o, r))): int(n) for t, o, r, n in rows}


def count_delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in sorted(set(after) | set(before))
            if after.get(k, 0) - before.get(k, 0)}


# --- users and sessions ----------------------------------------------------------

_USERS_SCRIPT = """
import json, sys
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.sessions.backends.db import SessionStore
n, minted_from = {n}, {minted_from}
User = get_user_model()
password = make_password({password!r})  # hashed once, shared by every bench user
User.objects.bulk_create([User(username=f"bench{{i:05d}}", password=password) for i in range(n)])
keys = []
users = list(User.objects.filter(username__startswith="bench").order_by("username"))
for user in users[minted_from:]:
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    keys.append(store.session_key)
print("BENCH-KEYS " + json.dumps({{"cookie": settings.SESSION_COOKIE_NAME, "keys": keys}}))
"""


def users_login(stack: Stack, *, users: int, form_logins: int) -> list[str]:
    """Cookie headers of `users` logged-in users.

    The first `form_logins` log in through the real login form (Browser); the
    others get a session made the way django.contrib.auth.login makes one, in
    the site's database (a form login costs a full PBKDF2 hash, ~0.3 s of the
    site's CPU: a thousand of them would dominate the run).
    """
    form_logins = min(form_logins, users)
    out = manage("shell", "-c", _USERS_SCRIPT.format(n=users, minted_from=form_logins,
                                                     password=PASSWORD), env=stack.env)
    line = next(l for l in out.splitlines() if l.startswith("BENCH-KEYS "))
    minted = json.loads(line[len("BENCH-KEYS "):])
    cookies = []
    for i in range(form_logins):
        browser = Browser(stack.site)
        try:
            browser.login(f"bench{i:05d}", PASSWORD)
            cookies.append(browser.cookie_header())
        finally:
            browser.close()
    cookies += [f"{minted['cookie']}={key}" for key in minted["keys"]]
    return cookies


def terminate(process: subprocess.Popen, timeout: float = 10) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_rss_settled(pid: int, *, seconds: float = 1.0) -> int:
    time.sleep(seconds)
    return rss_kb(pid)
