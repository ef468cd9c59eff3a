"""Hone settings, read from environment variables (see .env.example).

One file for every deployment: the embedded demo (SQLite, a private Redis started by
`manage.py demo`) and production (PostgreSQL, Redis, S3-compatible storage) differ only in
the variables set.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DEBUG is off. Set it in the environment or in .env "
            "(see .env.example), or set DEBUG=1 for local development."
        )
    SECRET_KEY = "hone-insecure-development-key-not-for-production"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- HTTPS: on unless DEBUG (then plain HTTP on this machine) -----------------------------
# Production is served over HTTPS only: plain HTTP is redirected, cookies never travel over it,
# and browsers are told (HSTS) to use nothing else for a year, subdomains included.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
# Behind a proxy that ends TLS, Django sees plain HTTP: name the header the proxy sets (and
# strips from clients) and the value that means HTTPS, e.g. HTTP_X_FORWARDED_PROTO,https.
_proxy_header = env.str("SECURE_PROXY_SSL_HEADER", default="")
_proxy_header_parts = [part.strip() for part in _proxy_header.split(",")]
SECURE_PROXY_SSL_HEADER = tuple(_proxy_header_parts) if _proxy_header else None
if _proxy_header and not (
    len(_proxy_header_parts) == 2
    and _proxy_header_parts[0].startswith("HTTP_")
    and _proxy_header_parts[1]
):
    raise ImproperlyConfigured(
        f"SECURE_PROXY_SSL_HEADER={_proxy_header!r}: expected the header as Django names it "
        "and the value that means HTTPS, separated by a comma, e.g. HTTP_X_FORWARDED_PROTO,https."
    )

# Everything Hone writes on disk (SQLite database, artifacts, the demo's Redis) lives here.
VAR_DIR = Path(env.str("HONE_VAR_DIR", default=str(BASE_DIR / "var")))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    # Before rest_framework.authtoken: feedback's drf_create_token (audited) replaces DRF's.
    "feedback",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "training",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

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

# --- Database: SQLite file by default, PostgreSQL in production -------------------------
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'hone.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker write to the same file: wait for locks instead of
    # failing, and take the write lock at BEGIN so that transactions never deadlock.
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env.bool(
    "DATABASE_POOL", default=True
):
    # A connection pool per process (psycopg_pool): a new PostgreSQL connection costs a
    # backend fork, several milliseconds, and under ASGI each request runs in its own thread,
    # so persistent connections (CONN_MAX_AGE) would leak one per thread. The pool hands each
    # request a warm connection and takes it back at the end; max_size bounds what one
    # process may hold (workers x max_size must stay under PostgreSQL's max_connections).
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DATABASE_POOL_MIN", default=1),
        "max_size": env.int("DATABASE_POOL_MAX", default=8),
        "timeout": env.float("DATABASE_POOL_TIMEOUT", default=10.0),
    }
    # With a pool, Django checks each connection as it leaves the pool (one empty query):
    # after a restart of PostgreSQL the pool holds dead connections, each of which would
    # otherwise fail a request.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The fast path: the labeling API's two hot endpoints served in front of Django on PostgreSQL,
# on a psycopg async pool of the same size as the one above (api/fastpath.py, docs/benchmarks.md).
HONE_LABELING_FASTPATH = env.bool("HONE_LABELING_FASTPATH", default=True)
# The largest body the two labeling endpoints take (theirs are under 10 KB; a rationale at its
# 4,000-character limit, every character escaped, under 50 KB): larger is a 413, which the fast
# path answers before it knows the caller, having read no more than this.
HONE_LABELING_MAX_BODY_BYTES = env.int("HONE_LABELING_MAX_BODY_BYTES", default=64 * 1024)

# --- Queue and websockets: Redis when REDIS_URL is set --------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    # No Redis: an in-process broker and channel layer. Enough for a single process
    # (unit tests, `manage.py shell`); `manage.py demo` starts a private Redis instead so
    # that its worker and web server talk to each other (see README, "Embedded default").
    CELERY_BROKER_URL = "memory://"
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "training.tasks.iteration_start_task": {"queue": "default"},
    "training.tasks.runs_reap_stale_task": {"queue": "default"},
    "training.tasks.runs_resend_lost_task": {"queue": "default"},
    "training.tasks.human_gate_check_task": {"queue": "default"},
    "training.tasks.*": {"queue": "gpu"},
}
CELERY_BEAT_SCHEDULE = {
    "reap-stale-runs": {"task": "training.tasks.runs_reap_stale_task", "schedule": 60.0},
    "resend-lost-runs": {"task": "training.tasks.runs_resend_lost_task", "schedule": 60.0},
    # Labels call it for their own project; the beat catches what changes games otherwise.
    "human-gate-check": {"task": "training.tasks.human_gate_check_task", "schedule": 60.0},
    # Labels queue it every HONE_HEALTH_EVERY_LABELS for their project; the beat scores the
    # rest. On the gpu queue: an unstarted copy expires rather than pile up behind a job.
    "reward-health": {
        "task": "training.tasks.reward_health_score_task",
        "schedule": 600.0,
        "options": {"expires": 600},
    },
}
# Queue the scoring of fresh labels (docs/judgement.md) after every this many new labels.
HONE_HEALTH_EVERY_LABELS = env.int("HONE_HEALTH_EVERY_LABELS", default=20)
CELERY_TASK_ACKS_LATE = True
# Redis hands a message that was delivered but not acknowledged out again after the visibility
# timeout (kombu's default: 1 hour). With acks_late a job's message stays unacknowledged while
# the job runs, so the timeout must outlast the longest job (an iteration: 12 hours,
# training/tasks.py), or a second GPU worker would start the same step while the first still
# runs it. A dead worker's work is failed or sent again by the recovery, not by this timeout.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 13 * 3600}
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True  # the TrainingRun row is the source of truth
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)

# --- Training jobs ---------------------------------------------------------------------------
# Training stages run as child processes of the worker, launched with accelerate
# (training/jobs/child.py; processes and accelerate config per project: training_config.launch).
# inline: inside the worker's own process instead (the test suite's small models).
HONE_TRAINING_JOBS = env.str("HONE_TRAINING_JOBS", default="process")
if HONE_TRAINING_JOBS not in ("process", "inline"):
    raise ImproperlyConfigured(
        f"HONE_TRAINING_JOBS={HONE_TRAINING_JOBS!r}: expected process or inline."
    )
# A cancelled job gets this long to stop after SIGTERM, then its process group is killed.
HONE_JOB_TERMINATE_SECONDS = env.float("HONE_JOB_TERMINATE_SECONDS", default=15.0)

# --- Artifacts (adapters, reward models, dataset snapshots) ---------------------------------
# Every artifact goes through the "artifacts" storage (training/services/artifact_store.py).
# HONE_ARTIFACT_STORAGE=filesystem (the default): files under HONE_ARTIFACT_ROOT, which every
# GPU worker and the web server must see at the same path (one machine, or a shared mount).
# HONE_ARTIFACT_STORAGE=s3: an S3-compatible object store through django-storages (AWS S3,
# MinIO, Ceph, R2, ...); each machine reads through its own cache, HONE_ARTIFACT_CACHE.
ARTIFACT_ROOT = Path(env.str("HONE_ARTIFACT_ROOT", default=str(VAR_DIR / "artifacts")))
ARTIFACT_CACHE = Path(env.str("HONE_ARTIFACT_CACHE", default=str(VAR_DIR / "artifact-cache")))
HONE_ARTIFACT_STORAGE = env.str("HONE_ARTIFACT_STORAGE", default="filesystem")
if HONE_ARTIFACT_STORAGE == "filesystem":
    _artifacts_storage: dict = {"BACKEND": "training.services.artifact_store.ArtifactRootStorage"}
elif HONE_ARTIFACT_STORAGE == "s3":
    _bucket = env.str("HONE_S3_BUCKET", default="")
    if not _bucket:
        raise ImproperlyConfigured(
            "HONE_ARTIFACT_STORAGE=s3 needs HONE_S3_BUCKET, the bucket artifacts go to "
            "(see .env.example)."
        )
    _addressing = env.str("HONE_S3_ADDRESSING_STYLE", default="") or None
    if _addressing not in (None, "path", "virtual"):
        raise ImproperlyConfigured(
            f"HONE_S3_ADDRESSING_STYLE={_addressing!r}: expected path, virtual or nothing."
        )
    _artifacts_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": _bucket,
            # Unset: AWS itself. Other servers (MinIO, Ceph, R2): their URL.
            "endpoint_url": env.str("HONE_S3_ENDPOINT_URL", default="") or None,
            # Unset: boto3's own (AWS_DEFAULT_REGION, ~/.aws/config).
            "region_name": env.str("HONE_S3_REGION", default="") or None,
            "addressing_style": _addressing,
            # Every key under this prefix: several deployments can share a bucket.
            "location": env.str("HONE_S3_PREFIX", default="").strip("/"),
            # An artifact published again (a retried step) replaces its objects; a store that
            # renamed instead would leave the manifest naming other objects.
            "file_overwrite": True,
            # Downloads spill to disk past this size instead of holding an adapter in memory.
            "max_memory_size": 16 * 1024 * 1024,
            # Credentials are boto3's: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and
            # AWS_SESSION_TOKEN), AWS_PROFILE, or the machine's role; never in this file.
        },
    }
else:
    raise ImproperlyConfigured(
        f"HONE_ARTIFACT_STORAGE={HONE_ARTIFACT_STORAGE!r}: expected filesystem or s3."
    )
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "artifacts": _artifacts_storage,
}

# --- Models ----------------------------------------------------------------------------
HONE_DEFAULT_BASE_MODEL = env.str(
    "HONE_BASE_MODEL", default=str(VAR_DIR / "models" / "smollm2-135m-instruct")
)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "feedback:home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"

REST_FRAMEWORK = {
    # Session first: an anonymous request gets 403 (as the labeling endpoints always did);
    # scripts send "Authorization: Token <key>" (docs/api.md).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON without NaN, Infinity or nesting past 64 levels (a 400, not a 500).
    "DEFAULT_PARSER_CLASSES": [
        "api.parsers.StrictJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "api.base.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "api.schema.HoneAutoSchema",
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("HONE_API_ANON_RATE", default="60/minute"),
        "user": env.str("HONE_API_USER_RATE", default="6000/minute"),
    },
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Hone API",
    "DESCRIPTION": "Projects, prompts, comparisons, labels, datasets, training runs and policy "
    "versions of Hone. Guide: docs/api.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and Redoc from the drf-spectacular-sidecar wheel: no CDN at run time.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Labels and demonstrations both have a review_status, with different choices.
    "ENUM_NAME_OVERRIDES": {
        "LabelReviewStatusEnum": "feedback.models.PreferenceLabel.ReviewStatus",
        "DemonstrationReviewStatusEnum": "feedback.models.Demonstration.ReviewStatus",
    },
}

# Uploads of prompt and label files (feedback/imports/).
HONE_IMPORT_MAX_BYTES = env.int("HONE_IMPORT_MAX_BYTES", default=20 * 1024 * 1024)
HONE_IMPORT_MAX_RECORDS = env.int("HONE_IMPORT_MAX_RECORDS", default=100_000)
DATA_UPLOAD_MAX_MEMORY_SIZE = HONE_IMPORT_MAX_BYTES + 1024 * 1024

# The arena's battles are GPU jobs: per user, at most this many generating at once and this
# many started an hour (training/services/arena.py; beyond them a 429 says when to retry).
HONE_ARENA_MAX_GENERATING = env.int("HONE_ARENA_MAX_GENERATING", default=2)
HONE_ARENA_BATTLES_PER_HOUR = env.int("HONE_ARENA_BATTLES_PER_HOUR", default=30)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
