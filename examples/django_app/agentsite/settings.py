"""Settings of the example project: one file, no database, no templates."""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "agentsite.urls"
INSTALLED_APPS = [
    "xpander_sync.contrib.django",  # the XPANDER setting, system checks, manage.py xpander_* commands
]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DATABASES: dict = {}
USE_TZ = True

# xpander: keyword arguments of xpander_sync.Configuration. What is left out (or None) falls back to
# the environment: XPANDER_API_KEY, XPANDER_ORGANIZATION_ID, XPANDER_BASE_URL, XPANDER_AGENT_ID.
XPANDER = {
    "read_timeout": 20,  # a web request should not wait the default minute for the platform
    "outbox": os.environ.get("XPANDER_OUTBOX"),  # where undeliverable reports wait (manage.py xpander_outbox)
}
