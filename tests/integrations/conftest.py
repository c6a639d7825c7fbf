"""Hosts for the integration guides: Django, Flask, Celery, a Jupyter kernel, cron's ``/bin/sh``.

Each host's fixture imports its packages and skips with a reason when they are missing;
``tox -e integrations`` installs them all. The Celery tests start Debian's ``redis-server``
(``.ci/ensure-redis`` installs it; tox runs it first) and real Celery worker processes (``celery_project/harness.py``).
The examples under ``examples/`` are loaded from their files, exactly as the guides in
``docs/guides/`` show them.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
DOCS_GUIDES = REPO / "docs" / "guides"
INSTALL_HINT = "install the integration hosts with: tox -e integrations"


def require(*modules: str) -> None:
    """Skip the test, naming the missing package, unless every module imports."""
    for name in modules:
        pytest.importorskip(name, reason=f"{name} is not installed ({INSTALL_HINT})")


def closed_port_url() -> str:
    """A loopback URL on which nothing listens (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def xpander_settings(backend: Any, **extra: Any) -> Dict[str, Any]:
    """The ``XPANDER_*`` values a deployment would set, pointing at the local backend."""
    values = {
        "XPANDER_BASE_URL": backend.url,
        "XPANDER_API_KEY": backend.configuration.api_key.reveal(),
        "XPANDER_ORGANIZATION_ID": "local-org",
        "XPANDER_AGENT_ID": "agt-openai",
    }
    values.update(extra)
    return values


def load_example(relative: str) -> ModuleType:
    """Import ``examples/<relative>`` as a fresh module (examples are files, not a package)."""
    path = EXAMPLES / relative
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def django_project() -> Iterator[ModuleType]:
    """``examples/django_app`` set up as Django's test runner would; yields its views module."""
    require("django", "agno")
    import django
    from django.test.utils import setup_test_environment, teardown_test_environment

    project = str(EXAMPLES / "django_app")
    previous = os.environ.get("DJANGO_SETTINGS_MODULE")
    sys.path.insert(0, project)
    os.environ["DJANGO_SETTINGS_MODULE"] = "agentsite.settings"
    try:
        django.setup()
        setup_test_environment()  # allows the test client's host, collects responses
        from agentsite import views

        yield views
        teardown_test_environment()
    finally:
        sys.path.remove(project)
        if previous is None:
            os.environ.pop("DJANGO_SETTINGS_MODULE", None)
        else:
            os.environ["DJANGO_SETTINGS_MODULE"] = previous


@pytest.fixture
def flask_example() -> ModuleType:
    """``examples/flask_app.py``, imported from its file."""
    require("flask", "agno")
    return load_example("flask_app.py")


@pytest.fixture
def notebook_runner() -> Any:
    """``run(path)``: execute a notebook in a real ``python3`` kernel and return it."""
    require("nbclient", "nbformat", "ipykernel", "agno")
    import nbformat
    from nbclient import NotebookClient

    def run(path: Path, cwd: Path) -> Any:
        notebook = nbformat.read(str(path), as_version=4)
        NotebookClient(notebook, kernel_name="python3", timeout=120,
                       resources={"metadata": {"path": str(cwd)}}).execute()
        return notebook

    return run
