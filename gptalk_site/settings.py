"""GPTalk Chat settings: one module, driven by the environment.

Development needs no configuration (SQLite, in-memory channel layer, the built-in
GPTalk emulator). Production is switched on by environment variables: with
DJANGO_DEBUG off, DJANGO_SECRET_KEY is required and start-up fails without it.
Every variable read here is listed in the README.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw.strip() else default
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}") from exc


DEBUG = env_bool("DJANGO_DEBUG", default="DJANGO_SECRET_KEY" not in os.environ)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. It is required when DJANGO_DEBUG is off: "
            "set it to a long random string, e.g. the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
        )
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "csp",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes requires: it turns a locked-out login into a 429 page.
    "axes.middleware.AxesMiddleware",
]

# Login throttling against password guessing (django-axes): after
# AXES_FAILURE_LIMIT failed logins for one username from one address, that
# pair is locked out for AXES_COOLOFF_TIME hours; a good login resets the count.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = env_bool("GPTALK_LOGIN_THROTTLE", default=True)
AXES_FAILURE_LIMIT = int(os.environ.get("GPTALK_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = env_float("GPTALK_LOGIN_COOLOFF_HOURS", 0.25)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_IPWARE_PROXY_COUNT = int(os.environ.get("DJANGO_PROXY_COUNT", "0")) or None
AXES_VERBOSE = False

# Content-Security-Policy (django-csp): no inline scripts anywhere; model
# output is sanitized Markdown and could not run script even if it tried.
# Inline style attributes stay allowed (KaTeX lays out math with them).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

ROOT_URLCONF = "gptalk_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "chat.context_processors.site",
            ],
        },
    },
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "gptalk_site.asgi.application"

# Database: SQLite by default; DATABASE_URL (e.g. postgres://...) switches.
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": BASE_DIR / "db.sqlite3",
            "OPTIONS": {"timeout": 20},
        }
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL: readers never wait for the writer and a commit is one append, not a
    # journal rewrite with two fsyncs; IMMEDIATE: a writing transaction takes the
    # write lock up front instead of failing with "database is locked" midway.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
        }
    )
    # Keep the connection: every ORM call runs in asgiref's one thread-sensitive
    # worker thread, so there is one connection to keep, and opening it (the
    # file, ~40 SQL functions, the pragmas) was 16 % of that thread at 500 streams.
    DATABASES["default"]["CONN_MAX_AGE"] = 600
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Under ASGI, persistent connections must stay off (Django docs, "Async
    # support"); psycopg 3's pool keeps connections warm instead.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": int(os.environ.get("DATABASE_POOL_MAX", "20")),
    }

# Channel layer: in-memory by default; REDIS_URL switches to Redis.
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    # Redis pub/sub: messages are pushed to the processes subscribed to a group
    # or channel; measured cheaper and quicker than the list-based
    # RedisChannelLayer for what other processes follow (bench/layer_cost.py,
    # docs/performance.md). Nothing is stored for a subscriber that is gone:
    # a socket that misses events heals by seq and snapshot.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chat.layers.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chat.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 5000, "expiry": 60},
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:index"
LOGOUT_REDIRECT_URL = "login"
SIGNUP_ENABLED = env_bool("GPTALK_SIGNUP_ENABLED", default=True)

# Mail (password resets). Mail counts as configured when EMAIL_HOST names an
# SMTP server, or DJANGO_EMAIL_BACKEND names a backend on purpose (e.g. the
# console one in development). Otherwise nothing can reach a person's inbox:
# the reset page says to ask an administrator, who makes a one-time reset link
# in the admin; a console backend that no one reads never stands in for mail.
_EMAIL_HOST_SET = os.environ.get("EMAIL_HOST", "").strip()
EMAIL_HOST = _EMAIL_HOST_SET or "localhost"
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "587"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", default=False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("Set EMAIL_USE_TLS (STARTTLS) or EMAIL_USE_SSL (implicit TLS), not both.")
EMAIL_TIMEOUT = env_float("EMAIL_TIMEOUT", 10.0)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "GPTalk Chat <noreply@localhost>")
_EMAIL_BACKEND_SET = os.environ.get("DJANGO_EMAIL_BACKEND", "").strip()
EMAIL_BACKEND = _EMAIL_BACKEND_SET or (
    "django.core.mail.backends.smtp.EmailBackend"
    if _EMAIL_HOST_SET or not DEBUG
    else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_CONFIGURED = bool(_EMAIL_HOST_SET or _EMAIL_BACKEND_SET)

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("ru", "Русский")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# `manage.py collectstatic` fills it (`make run` does); tests point it elsewhere.
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT") or BASE_DIR / "staticfiles")
# Hashed names and gzip copies (gptalk_site/staticfiles.py). Whitenoise serves a
# hashed name as immutable for ten years, and any other name for a minute
# (WHITENOISE_MAX_AGE's default), so an upgrade never leaves stale JavaScript.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "gptalk_site.staticfiles.StaticFilesStorage"},
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Production hardening, on whenever DEBUG is off.
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", default=True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# The upstreams (chat/upstream/). GPTALK_URL unset: the built-in emulator, which
# `manage.py serve` (`make run`) starts at GPTALK_EMULATOR_URL unless one already answers there.
GPTALK_EMULATOR_URL = "http://127.0.0.1:8765"
GPTALK_USE_BUILTIN_EMULATOR = not os.environ.get("GPTALK_URL", "").strip()
GPTALK_URL = (os.environ.get("GPTALK_URL", "").strip() or GPTALK_EMULATOR_URL).rstrip("/")
# Proxy, transport and timeouts apply to every upstream, GPTalk or OpenAI-compatible.
GPTALK_PROXY = os.environ.get("GPTALK_PROXY") or None
# "aiohttp": httpx over httpx-aiohttp's AiohttpTransport, which costs far less per
# relayed delta than httpx's own transport under many streams (bench/gptalk_client.py,
# docs/performance.md); "httpx": httpx's own transport.
GPTALK_TRANSPORT = os.environ.get("GPTALK_TRANSPORT") or "aiohttp"
GPTALK_CONNECT_TIMEOUT = env_float("GPTALK_CONNECT_TIMEOUT", 10.0)
GPTALK_READ_TIMEOUT = env_float("GPTALK_READ_TIMEOUT", 60.0)
# The provider "OpenAI", from the variables the official OpenAI SDK reads; it is
# added when either the URL or the key is set (chat/providers/registry.py).
OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL", "")
OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "")
OPENAI_MODEL = os.environ.get("OPENAI_MODEL", "")

# Chat limits.
CHAT_MAX_MESSAGE_CHARS = int(os.environ.get("CHAT_MAX_MESSAGE_CHARS", "20000"))
# Default per-user limits; staff override them per group or user in the admin.
CHAT_MESSAGES_PER_MINUTE = int(os.environ.get("CHAT_MESSAGES_PER_MINUTE", "20"))
CHAT_CONCURRENT_ANSWERS = int(os.environ.get("CHAT_CONCURRENT_ANSWERS", "3"))
CHAT_DAILY_ANSWER_CHARS = int(os.environ.get("CHAT_DAILY_ANSWER_CHARS", "2000000"))
# The largest websocket message the consumer accepts, in characters: the longest
# message with every character JSON-escaped (up to 12 characters each). As every
# such character is one byte, it bounds daphne's limit in bytes too.
CHAT_WS_MAX_MESSAGE_CHARS = CHAT_MAX_MESSAGE_CHARS * 12 + 4096
CHAT_SAVE_INTERVAL = env_float("CHAT_SAVE_INTERVAL", 1.0)
# An answer not saved for this many seconds belongs to a dead process: it is
# marked interrupted. A live answer saves at least every third of it.
CHAT_GENERATION_LEASE = env_float("CHAT_GENERATION_LEASE", 15.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_tokens": {"()": "chat.log_filters.RedactTokens"}},
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DJANGO_LOG_LEVEL", "INFO")},
    # httpx logs every request URL at INFO; GPTalk stream URLs carry a token.
    "loggers": {
        "httpx": {"level": "WARNING", "filters": ["redact_tokens"]},
        "httpcore": {"level": "WARNING", "filters": ["redact_tokens"]},
    },
}
