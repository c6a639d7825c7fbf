"""``examples/django_app`` (docs/guides/django.md) under Django's own test clients, against the local backend."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from xpander_sync import RetryPolicy

from .conftest import EXAMPLES, closed_port_url, require

PROMPT = "What is our refund window?"


def settings_for(url: str, api_key: str, **extra):
    """The project's ``XPANDER`` setting (Configuration keyword arguments) for one backend."""
    return {"XPANDER": {"base_url": url, "api_key": api_key, "organization_id": "local-org", **extra},
            "XPANDER_AGENT_ID": "agt-openai"}


@pytest.fixture
def site(django_project, xpander_backend):
    """The project's settings pointed at the local backend, as a deployment's settings would be."""
    from django.test import override_settings

    key = xpander_backend.configuration.api_key.reveal()
    with override_settings(**settings_for(xpander_backend.url, key)):
        yield xpander_backend


def test_sync_view_reports_the_run(site):
    from django.test import Client

    response = Client().post("/agent/run", {"input": PROMPT}, content_type="application/json")

    assert response.status_code == 200, response.content
    data = response.json()
    assert data["agent"] == "CRM Assistant"
    tools = "XpanderCrmSearchContacts, XpanderCrmCreateNote"
    assert data["result"] == f"CRM Assistant would answer {PROMPT!r} using {tools}"
    (report,) = site.reports()
    assert report["agent_id"] == "agt-openai" and report["body"]["id"] == data["task_id"]
    assert report["body"]["input"] == PROMPT and report["body"]["result"] == data["result"]
    assert report["body"]["is_success"] is True and report["body"]["duration"] >= 0
    loads = [r for r in site.requests if r["path"] == "/agents/agt-openai"]
    assert loads and loads[0]["headers"]["x-api-key"] == "***"  # sent, and masked in the log


def test_async_view_serves_concurrent_requests(site, django_project):
    from asgiref.sync import iscoroutinefunction
    from django.test import AsyncClient

    assert iscoroutinefunction(django_project.arun_agent)  # Django runs it on the event loop

    async def three_requests():
        client = AsyncClient()
        return await asyncio.gather(*(
            client.post("/agent/arun", {"input": f"q{i}"}, content_type="application/json") for i in range(3)
        ))

    responses = asyncio.run(three_requests())

    assert [r.status_code for r in responses] == [200, 200, 200]
    by_input = {r["body"]["input"]: r["body"]["id"] for r in site.reports()}
    assert by_input == {f"q{i}": responses[i].json()["task_id"] for i in range(3)}


def test_get_is_not_allowed(site):
    from django.test import Client

    assert Client().get("/agent/run").status_code == 405
    assert site.reports() == []


@pytest.mark.parametrize("path", ["/agent/run", "/agent/arun"])
def test_platform_unreachable_is_a_502(django_project, path):
    from django.test import Client, override_settings

    down = settings_for(closed_port_url(), "xpk-DJANGO-SENTINEL", retry=RetryPolicy(max_retries=0))
    with override_settings(**down):
        response = Client().post(path, {"input": "q"}, content_type="application/json")

    assert response.status_code == 502
    assert "error" in response.json() and b"xpk-DJANGO-SENTINEL" not in response.content


def test_the_project_passes_django_checks():
    require("django", "agno")
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=EXAMPLES / "django_app",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "no issues" in done.stdout
