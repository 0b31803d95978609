"""Settings of the test project: SQLite, and aioack on Redis under a unique key prefix."""

import os

SECRET_KEY = "aioack-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
INSTALLED_APPS = ["tests.django_project.shop"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "tests.django_project.urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["DJANGO_PROJECT_DB"],
        # The worker process writes while the tests read: wait for a lock, never fail on one.
        "OPTIONS": {"timeout": 20},
    }
}

_REDIS = os.environ.get("AIOACK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
_PREFIX = os.environ["DJANGO_PROJECT_REDIS_PREFIX"]
AIOACK = {
    "BROKER_URL": f"{_REDIS}?key_prefix={_PREFIX}",
    "RESULTS_URL": f"{_REDIS}?key_prefix={_PREFIX}-results",
    "BROKER_OPTIONS": {"poll_interval": 0.05},
    "RESULT_EXPIRES": 600,
}
