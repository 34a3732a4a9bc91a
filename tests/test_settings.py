"""Production is switched on by environment variables, and says clearly what is missing."""

import subprocess
import sys

from tests.fixtures.emulator import REPO_ROOT

PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "n8Jq-3vXk2_LpZ7rT0wYb5sGd4hF6mC1eQ9uA8iO2lK7pN3xV5zR0tW4yU6jH1gB",
    "DJANGO_ALLOWED_HOSTS": "chat.example.com",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://chat.example.com",
    "DATABASE_URL": "postgres://gptalk@127.0.0.1:5432/gptalk",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "GPTALK_URL": "https://gptalk.example.com",
}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "DJANGO_SETTINGS_MODULE": "gptalk_site.settings"}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO_ROOT, env={**base, **env},
        capture_output=True, text=True, timeout=120,
    )


def test_check_deploy_passes_with_the_production_environment():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_without_secret_key_fails_at_start_with_a_clear_message():
    env = {k: v for k, v in PRODUCTION.items() if k != "DJANGO_SECRET_KEY"}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


def test_bad_boolean_is_refused_clearly():
    result = manage("check", env={"DJANGO_DEBUG": "maybe"})
    assert result.returncode != 0
    assert "DJANGO_DEBUG must be true or false" in result.stderr


def test_settings_switch_database_and_channel_layer():
    code = (
        "from django.conf import settings as s;"
        "print(s.DATABASES['default']['ENGINE'], s.DATABASES['default']['CONN_MAX_AGE'],"
        " 'pool' in s.DATABASES['default']['OPTIONS'], s.CHANNEL_LAYERS['default']['BACKEND'])"
    )
    result = manage("shell", "--no-imports", "-c", code, env=PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.postgresql", "0", "True", "chat.layers.RedisPubSubChannelLayer"
    ]
    result = manage("shell", "--no-imports", "-c", code, env={})
    assert result.stdout.split()[0] == "django.db.backends.sqlite3"
    assert result.stdout.split()[-1] == "chat.layers.InMemoryChannelLayer"


def test_production_cookies_are_secure_httponly_samesite():
    code = (
        "from django.conf import settings as s;"
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY,"
        " s.SESSION_COOKIE_SAMESITE, s.CSRF_COOKIE_SAMESITE, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS > 0)"
    )
    result = manage("shell", "--no-imports", "-c", code, env=PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "True", "Lax", "Lax", "True", "True"]


def test_a_file_sqlite_database_runs_in_wal_mode(tmp_path):
    """WAL: pages keep reading while an answer is saved; commits are cheap;
    the connection is kept, not reopened for every call."""
    db = tmp_path / "wal.sqlite3"
    code = (
        "import django; django.setup();"
        "from django.db import connection;"
        "cursor = connection.cursor();"
        "print(cursor.execute('PRAGMA journal_mode').fetchone()[0], cursor.execute('PRAGMA synchronous').fetchone()[0],"
        " connection.settings_dict['CONN_MAX_AGE'])"
    )
    base = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "DJANGO_SETTINGS_MODULE": "gptalk_site.settings"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        env={**base, "DATABASE_URL": f"sqlite:///{db}"},
    )
    assert result.returncode == 0, result.stderr
    # synchronous=NORMAL; the one worker thread keeps its connection
    assert result.stdout.split() == ["wal", "1", "600"]


def test_upstream_settings_come_from_the_environment():
    code = (
        "from django.conf import settings as s;"
        "print(s.GPTALK_URL, s.GPTALK_EMULATOR_URL, s.GPTALK_TRANSPORT,"
        " s.OPENAI_BASE_URL, s.OPENAI_API_KEY, s.OPENAI_MODEL)"
    )
    env = {
        "GPTALK_URL": "http://upstream.example:1/", "GPTALK_TRANSPORT": "httpx",
        "OPENAI_BASE_URL": "http://127.0.0.1:11434/v1", "OPENAI_API_KEY": "sk-env",
        "OPENAI_MODEL": "llama3.2",
    }  # fmt: skip
    result = manage("shell", "--no-imports", "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "http://upstream.example:1", "http://127.0.0.1:8765", "httpx",
        "http://127.0.0.1:11434/v1", "sk-env", "llama3.2",
    ]  # fmt: skip
    # Unset (or blank): the built-in emulator, the aiohttp transport, no "OpenAI" provider.
    result = manage("shell", "--no-imports", "-c", code, env={"GPTALK_URL": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["http://127.0.0.1:8765", "http://127.0.0.1:8765", "aiohttp"]
