"""Settings of the example project: one file, no database, no templates."""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "agentsite.urls"
INSTALLED_APPS: list = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DATABASES: dict = {}
USE_TZ = True

# xpander: keyword arguments of xpander_sync.Configuration (base_url None means the xpander cloud).
XPANDER = {
    "api_key": os.environ.get("XPANDER_API_KEY"),
    "base_url": os.environ.get("XPANDER_BASE_URL"),
    "organization_id": os.environ.get("XPANDER_ORGANIZATION_ID"),
    "read_timeout": 20,  # a web request should not wait the default minute for the platform
}
XPANDER_AGENT_ID = os.environ.get("XPANDER_AGENT_ID", "agt-openai")
