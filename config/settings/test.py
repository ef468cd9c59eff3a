"""Settings for the test suite: PostgreSQL by default (DATABASE_URL), fast hashing."""

import os

os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/hone")

from config.settings.base import *  # noqa: E402,F403
from config.settings.base import DATABASES, VAR_DIR  # noqa: E402

# The suite's loops train tiny models inside the test process (a child's imports would cost
# more than the training); tests/training/test_child_jobs.py and the end-to-end worker
# (config.settings.base) launch real child processes.
HONE_TRAINING_JOBS = os.environ.get("HONE_TRAINING_JOBS", "inline")

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory: the end-to-end tests' worker process opens the same database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-hone.sqlite3")}
