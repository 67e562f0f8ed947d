"""smsadmin settings: everything comes from the environment (or an optional .env file).

With nothing set, the app runs on the embedded default: SQLite and Celery's filesystem
broker under var/, and the console SMS backend, which records messages and sends nothing.
Every setting is listed in README.md.
"""

import os
from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# SMSADMIN_ENV_FILE names another file, or none at all when empty (the test suite).
env_file_name = os.environ.get("SMSADMIN_ENV_FILE", str(BASE_DIR / ".env"))
if env_file_name and Path(env_file_name).is_file():
    environ.Env.read_env(env_file_name, overwrite=False)

# Where the embedded default keeps its state: SQLite file, broker queue, beat schedule.
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment or in .env "
            "(make run writes one for you on first start)."
        )
    SECRET_KEY = "insecure-debug-only-key"  # noqa: S105 - DEBUG only, never served

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="").rstrip("/")
CSRF_TRUSTED_ORIGINS = env.list(
    "CSRF_TRUSTED_ORIGINS", default=[PUBLIC_BASE_URL] if PUBLIC_BASE_URL else []
)
ORG_NAME = env.str("ORG_NAME", default="Our community")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "axes",
    # Two-factor sign-in (smsadmin/two_factor.py): authenticator apps and recovery codes.
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    # django-csp: its checks catch a policy written in the pre-4.0 format.
    "csp",
    "smsadmin.apps.SmsadminConfig",
    "members",
    "events",
    "messaging",
    "suppression",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.is_verified(): the session passed the second factor.
    "django_otp.middleware.OTPMiddleware",
    "smsadmin.middleware.ForcePasswordChangeMiddleware",
    # After the forced password change: a new password first, then the second factor.
    "smsadmin.middleware.TwoFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks, so it sees the outcome of every login.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "smsadmin.urls"
WSGI_APPLICATION = "smsadmin.wsgi.application"

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
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'smsadmin.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat write at once: WAL lets readers run beside the writer,
    # IMMEDIATE takes the write lock at BEGIN (so a transaction never fails half-way
    # on upgrade to a writer), and the timeout makes a writer wait instead of raising
    # "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": (
                "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;PRAGMA foreign_keys=ON;"
            ),
            "transaction_mode": "IMMEDIATE",
            "timeout": env.int("SQLITE_BUSY_TIMEOUT_SECONDS", default=30),
        }
    )
    # A file, not :memory:, so threads in concurrency tests share it; one per process,
    # so test runs side by side do not trample each other.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth -----------------------------------------------------------------------------
AUTH_USER_MODEL = "smsadmin.User"
AUTHENTICATION_BACKENDS = [
    # First, so a locked-out client is refused before its password is even checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"
LOGIN_REDIRECT_URL = "admin:index"

# django-axes, two lockouts:
# - 5 failures for one user name from one address lock that pair for 15 minutes;
# - AXES_ACCOUNT_FAILURE_LIMIT failures for one user name from any addresses (a botnet,
#   one IPv6 /64) within AXES_ACCOUNT_COOLOFF_MINUTES lock that account for every address,
#   until fewer than that many are left within that time.
# Axes counts both (AXES_LOCKOUT_PARAMETERS: the pair, and the user name alone) but has
# one limit for every group, compared with the largest count, which is always the user
# name's. So AXES_FAILURE_LIMIT is a callable (smsadmin.auth.failure_limit): the pair's
# limit while the pair has reached it within its 15 minutes, else the account's. Axes
# keeps its records for AXES_COOLOFF_TIME, the account's (longer) time; a pair's count
# is forgotten only once an hour passes without failures, so after its 15 minutes one
# more failure from there locks it again. A successful sign-in resets both counts
# (AXES_RESET_ON_SUCCESS); Admins unlock with "Unlock" (smsadmin.auth.signin_unlock).
AXES_ADDRESS_FAILURE_LIMIT = 5
AXES_ADDRESS_COOLOFF = timedelta(minutes=15)
AXES_ACCOUNT_FAILURE_LIMIT = env.int("AXES_ACCOUNT_FAILURE_LIMIT", default=20)
AXES_ACCOUNT_COOLOFF_MINUTES = env.int("AXES_ACCOUNT_COOLOFF_MINUTES", default=60)
if AXES_ACCOUNT_FAILURE_LIMIT < 1 or AXES_ACCOUNT_COOLOFF_MINUTES < 15:
    raise ImproperlyConfigured(
        "AXES_ACCOUNT_FAILURE_LIMIT must be 1 or more, AXES_ACCOUNT_COOLOFF_MINUTES 15 or "
        "more (the per-address lockout's 15 minutes)."
    )
AXES_FAILURE_LIMIT = "smsadmin.auth.failure_limit"
AXES_COOLOFF_TIME = timedelta(minutes=AXES_ACCOUNT_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "username"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "smsadmin.auth.lockout_response"
# smsadmin.admin shows the records under "Users and sign-in", in plain words.
AXES_ENABLE_ADMIN = False
# Behind nginx, REMOTE_ADDR is nginx itself. TRUSTED_PROXY_COUNT says how many proxies
# stand in front of the app; only then is X-Forwarded-For read, and only the entry the
# outermost trusted proxy appended (counted from the right), which a client cannot forge.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
AXES_CLIENT_IP_CALLABLE = "smsadmin.auth.client_ip"
# Each failed attempt while locked out does not restart the 15 minutes, so the page's
# "try again in N minutes" holds.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
if TRUSTED_PROXY_COUNT:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Two-factor sign-in (django-otp) ----------------------------------------------------
# Admins cannot reach the admin or compose until they have set up an authenticator app;
# everyone else may set one up. On unless DEBUG.
REQUIRE_2FA_FOR_ADMINS = env.bool("REQUIRE_2FA_FOR_ADMINS", default=not DEBUG)
# The name authenticator apps show next to the code.
OTP_TOTP_ISSUER = f"{ORG_NAME} smsadmin"
# The admin's device pages never show another user's secret key, QR code or recovery codes.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

# --- Cookies and transport security ---------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
# The admin and our pages put the token in the form, so no script needs the cookie.
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=60 * 60 * 12)
SECURE_REFERRER_POLICY = "same-origin"
# HTTPS only, as the cookies are: `make run` (plain http on loopback) turns both off with
# SESSION_COOKIE_SECURE=false. Behind nginx, SECURE_PROXY_SSL_HEADER (above) tells a
# request that came in over https from one nginx forwarded from http.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=SESSION_COOKIE_SECURE)
# A health probe on the machine itself (curl http://127.0.0.1:8000/healthz, a load
# balancer's check) talks plain http and must not be sent to https.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# Browsers remember for this long to come back over https only. Sent on https responses
# only, so `make run` never sends it.
SECURE_HSTS_SECONDS = env.int(
    "SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365 if SECURE_SSL_REDIRECT else 0
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
# Preloading puts the domain on a list built into browsers, hard to get off again: the
# organisation's choice for its whole domain, not this app's, so off unless asked for.
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# ... and then `check --deploy` need not remind us of it on every run.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]

# Content-Security-Policy (django-csp): scripts only from our own static files, never
# inline, so injected markup cannot run. Style attributes are allowed (a few templates
# use them; browsers without style-src-attr just lose that styling), <style> elements
# and stylesheets from elsewhere are not.
_csp_directives: dict[str, list[str]] = {
    "default-src": [SELF],
    "script-src": [SELF],
    "style-src": [SELF],
    "style-src-attr": [UNSAFE_INLINE],
    "img-src": [SELF, "data:"],
    "object-src": [NONE],
    "frame-ancestors": [NONE],
    "form-action": [SELF],
    "base-uri": [SELF],
}
if _csp_report_uri := env.str("CSP_REPORT_URI", default=""):
    _csp_directives["report-uri"] = [_csp_report_uri]
# Report-only: browsers report what the policy would block and block nothing, to try a
# change (a customised admin template) before enforcing it. Kept out of names starting
# with CSP_, which django-csp's checks take for its old settings format.
if env.bool("CSP_REPORT_ONLY", default=False):
    CONTENT_SECURITY_POLICY_REPORT_ONLY = {"DIRECTIVES": _csp_directives}
else:
    CONTENT_SECURITY_POLICY = {"DIRECTIVES": _csp_directives}

# --- Internationalisation -------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# The admin's 100k-row changelists and bulk actions post many ids at once.
DATA_UPLOAD_MAX_NUMBER_FIELDS = 200_000

# --- SMS ------------------------------------------------------------------------------
SMS_BACKEND = env.str("SMS_BACKEND", default="console")
if SMS_BACKEND not in ("console", "twilio"):
    raise ImproperlyConfigured("SMS_BACKEND must be 'console' or 'twilio'.")
SMS_DEFAULT_REGION = env.str("SMS_DEFAULT_REGION", default="US").upper()
SMS_RATE_PER_SECOND = env.float("SMS_RATE_PER_SECOND", default=10.0)
SMS_MAX_IN_FLIGHT = env.int("SMS_MAX_IN_FLIGHT", default=10)
SMS_CHUNK_SIZE = env.int("SMS_CHUNK_SIZE", default=200)
SMS_CLAIM_STALE_SECONDS = env.int("SMS_CLAIM_STALE_SECONDS", default=300)
SMS_RECONCILE_AFTER_MINUTES = env.int("SMS_RECONCILE_AFTER_MINUTES", default=10)
SMS_AUTOPAUSE_FAILURE_RATE = env.float("SMS_AUTOPAUSE_FAILURE_RATE", default=0.2)
SMS_VALIDITY_PERIOD_SECONDS = env.int("SMS_VALIDITY_PERIOD_SECONDS", default=0)
SMS_HTTP_TIMEOUT_SECONDS = env.float("SMS_HTTP_TIMEOUT_SECONDS", default=15.0)
# A row whose outcome stays unknown this long is shown to staff as needing a decision.
SMS_UNKNOWN_ESCALATE_HOURS = env.float("SMS_UNKNOWN_ESCALATE_HOURS", default=24.0)
# This many requests in a row with no answer from Twilio pause the blast.
SMS_PAUSE_AFTER_NO_ANSWER = env.int("SMS_PAUSE_AFTER_NO_ANSWER", default=10)
# This many messages in a row failing with the same error code pause the blast.
SMS_PAUSE_AFTER_SAME_ERROR = env.int("SMS_PAUSE_AFTER_SAME_ERROR", default=10)
# Transient delivery failures (30003, 30004, 30008) of one number within 90 days that
# suppress it.
SUPPRESS_AFTER_TRANSIENT = env.int("SUPPRESS_AFTER_TRANSIENT", default=3)
if SUPPRESS_AFTER_TRANSIENT < 1:
    raise ImproperlyConfigured("SUPPRESS_AFTER_TRANSIENT must be 1 or more.")
TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env.str("TWILIO_AUTH_TOKEN", default="")
TWILIO_FROM_NUMBER = env.str("TWILIO_FROM_NUMBER", default="")
TWILIO_MESSAGING_SERVICE_SID = env.str("TWILIO_MESSAGING_SERVICE_SID", default="")
TWILIO_API_BASE_URL = env.str("TWILIO_API_BASE_URL", default="").rstrip("/")
# Inbound texts: the answer to HELP/INFO (empty: no answer), and the keyword that makes the
# sender a community member (empty: off).
SMS_HELP_REPLY = env.str("SMS_HELP_REPLY", default="")
SMS_JOIN_KEYWORD = env.str("SMS_JOIN_KEYWORD", default="").strip().upper()
# Compose: what one segment costs (shown as an estimate before sending) and, when set, the
# number of recipients above which a Social manager's blast waits for an Admin's approval.
SMS_COST_PER_SEGMENT = env.float("SMS_COST_PER_SEGMENT", default=0.0083)
SMS_COST_CURRENCY = env.str("SMS_COST_CURRENCY", default="USD")
BLAST_APPROVAL_THRESHOLD: int | None = env.int("BLAST_APPROVAL_THRESHOLD", default=None)
# Nobody is texted in these hours (TIME_ZONE), unless staff override it for one blast;
# empty turns them off.
QUIET_HOURS = env.str("QUIET_HOURS", default="21:00-09:00")
if BLAST_APPROVAL_THRESHOLD is not None and BLAST_APPROVAL_THRESHOLD < 0:
    raise ImproperlyConfigured("BLAST_APPROVAL_THRESHOLD must be 0 or more (unset: off).")

IMPORT_MAX_BYTES = env.int("IMPORT_MAX_BYTES", default=50 * 1024 * 1024)
# Uploads are kept here between preview and confirm, with their error reports.
IMPORT_DIR = Path(env.str("IMPORT_DIR", default=str(VAR_DIR / "imports")))
# A file with more lines than this is read and written by a Celery worker (progress bar);
# smaller ones are done within the request.
IMPORT_SYNC_MAX_ROWS = env.int("IMPORT_SYNC_MAX_ROWS", default=2000)

# --- Celery ---------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
BROKER_DIR = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # One folder in and out: producers and consumers share the same queue files.
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # A task not acknowledged within this time is handed to another worker. Retry
    # delays and task time limits stay far below it, so it only ever fires after a
    # worker really died.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)
    }
CELERY_BROKER_CONNECTION_TIMEOUT = 3
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=600)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=660)
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# Scheduled blasts: how often beat runs a dispatch pass, after how long a blast claimed
# by a pass that died is taken up again, and how late a blast may still go out on its own.
SCHEDULER_POLL_SECONDS = env.float("SCHEDULER_POLL_SECONDS", default=30.0)
SCHEDULER_STALE_MINUTES = env.float("SCHEDULER_STALE_MINUTES", default=5.0)
SCHEDULE_GRACE_MINUTES = env.float("SCHEDULE_GRACE_MINUTES", default=60.0)
if SCHEDULER_POLL_SECONDS <= 0 or SCHEDULER_STALE_MINUTES <= 0 or SCHEDULE_GRACE_MINUTES < 0:
    raise ImproperlyConfigured(
        "SCHEDULER_POLL_SECONDS and SCHEDULER_STALE_MINUTES must be above 0, "
        "SCHEDULE_GRACE_MINUTES 0 or more."
    )
# Beat sends the worker a heartbeat task this often; /healthz reports the worker late
# after three of them and a minute.
WORKER_HEARTBEAT_SECONDS = env.float("WORKER_HEARTBEAT_SECONDS", default=30.0)
# Data retention: message bodies and phone numbers of deliveries, inbound replies and
# outbox messages older than this many days are erased each day; unset keeps them.
RETENTION_DAYS: int | None = env.int("RETENTION_DAYS", default=None)
if RETENTION_DAYS is not None and RETENTION_DAYS < 1:
    raise ImproperlyConfigured("RETENTION_DAYS must be 1 or more (unset: keep everything).")
CELERY_BEAT_SCHEDULE = {
    # Dispatch due scheduled blasts, repeats and event reminders; heartbeat.
    "dispatch-scheduled": {
        "task": "messaging.dispatch_scheduled",
        "schedule": SCHEDULER_POLL_SECONDS,
        "options": {"expires": max(1.0, SCHEDULER_POLL_SECONDS - 1)},
    },
    # Re-enqueue what no worker took, hand on blasts whose worker died, and turn
    # abandoned 'sending' rows into 'unknown'.
    "sweep-blasts": {
        "task": "messaging.sweep_blasts",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    # Settle 'unknown' rows from Twilio's own message list.
    "reconcile-deliveries": {
        "task": "messaging.reconcile_deliveries",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    # Abandon CSV previews not confirmed within a day; remove uploads left behind and
    # problem reports older than a week (members.cleanup). Hourly, so none stays much
    # over a day; a missed run is made up by the next.
    "clean-import-files": {
        "task": "members.clean_import_files",
        "schedule": crontab(minute=41),
        "options": {"expires": 55 * 60},
    },
    # Proof for /healthz that a worker takes tasks.
    "worker-heartbeat": {
        "task": "messaging.worker_heartbeat",
        "schedule": WORKER_HEARTBEAT_SECONDS,
        "options": {"expires": max(1.0, WORKER_HEARTBEAT_SECONDS - 1)},
    },
}
if RETENTION_DAYS is not None:
    # Erase old message bodies and numbers; a day late changes nothing, so a missed
    # run is simply made up by the next.
    CELERY_BEAT_SCHEDULE["erase-old-messages"] = {
        "task": "messaging.erase_old_messages",
        "schedule": crontab(hour=3, minute=17),
        "options": {"expires": 60 * 60 * 12},
    }

# --- Backups --------------------------------------------------------------------------
# `manage.py backup` (SQLite only) writes here and keeps the newest BACKUP_KEEP copies.
BACKUP_DIR = Path(env.str("BACKUP_DIR", default=str(VAR_DIR / "backups")))
BACKUP_KEEP = env.int("BACKUP_KEEP", default=14)
if BACKUP_KEEP < 1:
    raise ImproperlyConfigured("BACKUP_KEEP must be 1 or more.")

# --- Logging --------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    # A refusal (403) is an expected answer: one line (method, path, user, why), no
    # traceback. Errors keep theirs.
    "filters": {"forbidden_one_line": {"()": "smsadmin.logging.ForbiddenOneLine"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.request": {"filters": ["forbidden_one_line"]},
        "axes": {"level": "WARNING"},
        # The twilio client logs every request header at INFO.
        "twilio.http_client": {"level": "WARNING"},
    },
}


def _check_quiet_hours() -> None:
    from messaging.quiet_hours import QuietHoursError, parse

    try:
        parse(QUIET_HOURS)
    except QuietHoursError as exc:
        raise ImproperlyConfigured(str(exc)) from None


_check_quiet_hours()

VAR_DIR.mkdir(parents=True, exist_ok=True)
if CELERY_BROKER_URL.startswith("filesystem://"):
    for folder in ("queue", "processed", "control"):
        (BROKER_DIR / folder).mkdir(parents=True, exist_ok=True)
