"""End to end: a LocalBackend, a worker, and tasks created with ``Backend.invoke_agent``.

In-process for the counting tests (exactly-once across a backend restart, the concurrency bound), and as a
real process (``python -m xpander_sync worker MODULE[:FUNCTION]``) for signals, exit codes, hooks, files and
the guide's handler.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from xpander_sync import Backend, Configuration, RetryPolicy, Task, Tokens
from xpander_sync.handlers import clear_worker_handlers
from xpander_sync.local import LocalBackend
from xpander_sync.worker import Worker

from ..conftest import wait_until

API_KEY = "xpk-E2E-SENTINEL-93ab71"
AGENT = "agt-openai"
REPO_ROOT = Path(__file__).resolve().parents[2]
FAST: Dict[str, Any] = dict(heartbeat_interval=0.2, backoff_base=0.02, backoff_max=0.2, drain_timeout=5.0)


@pytest.fixture(autouse=True)
def clean_registries() -> Iterator[None]:
    clear_worker_handlers()
    yield
    clear_worker_handlers()


def config_for(url: str) -> Configuration:
    return Configuration(base_url=url, api_key=API_KEY, organization_id="local-org",
                         retry=RetryPolicy(max_retries=1, backoff_base=0.01, backoff_max=0.05))


def statuses(backend: LocalBackend, ids: Any) -> Dict[str, str]:
    return {tid: backend._store.get_task(tid)["status"] for tid in ids}


# -- in-process ---------------------------------------------------------------------------------------------


def test_fifty_tasks_are_each_handled_once_across_a_backend_restart(tmp_path: Path) -> None:
    db = tmp_path / "e2e.db"
    first = LocalBackend(db_path=db, api_key=API_KEY, stream_poll_interval=0.02).start()
    port = first._httpd.server_address[1]  # type: ignore[union-attr]
    config = config_for(first.url)
    handled: List[str] = []
    lock = threading.Lock()

    def handler(task: Task) -> Task:
        with lock:
            handled.append(task.id)
        time.sleep(0.02)
        task.result = f"handled: {task.input.text}"
        task.used_tools = ["XpanderCrmSearchContacts", f"tool-{task.input.text}"]
        task.tokens = Tokens(prompt_tokens=10, completion_tokens=2)
        return task

    worker = Worker(handler, configuration=config, agent_id=AGENT, concurrency=4, **FAST)
    worker.start()
    second = None
    try:
        assert worker.wait_registered(5)
        client = Backend(config)
        prompts = {client.invoke_agent(agent_id=AGENT, prompt=f"task-{i}").id: f"task-{i}" for i in range(25)}
        wait_until(lambda: len(handled) >= 8, 10, "the first tasks")
        first.stop()  # mid-way: tasks in flight, tasks sent but not started, tasks never sent
        time.sleep(0.2)  # the outage
        second = LocalBackend(db_path=db, api_key=API_KEY, port=port, stream_poll_interval=0.02).start()
        assert second.url == first.url
        prompts.update(
            {client.invoke_agent(agent_id=AGENT, prompt=f"task-{i}").id: f"task-{i}" for i in range(25, 50)}
        )
        wait_until(lambda: set(statuses(second, prompts).values()) == {"completed"}, 20, "all 50 tasks")
    finally:
        worker.stop()
        assert worker.join(10)
        if second is not None:
            stored = {t["id"]: t for t in second.tasks()}
            metrics = [m["body"]["execution_id"] for m in second.metrics()]
            second.stop()
    counts = collections.Counter(handled)
    assert set(counts) == set(prompts) and len(prompts) == 50
    assert [tid for tid, n in counts.items() if n != 1] == []  # exactly once each
    for tid, prompt in prompts.items():
        assert stored[tid]["result"] == f"handled: {prompt}"
        assert stored[tid]["used_tools"] == ["XpanderCrmSearchContacts", f"tool-{prompt}"]
        assert stored[tid]["tokens"]["prompt_tokens"] == 10
    # Metrics are best effort through the outage, but never duplicated.
    assert len(metrics) == len(set(metrics)) and set(metrics) <= set(prompts)
    assert worker.stats()["connections"] >= 2 and worker.stats()["completed"] == 50


def test_the_configured_concurrency_is_the_bound(tmp_path: Path) -> None:
    running, peak = 0, 0
    lock = threading.Lock()

    def handler(task: Task) -> Task:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.25)
        with lock:
            running -= 1
        task.result = "slow"
        return task

    with LocalBackend(api_key=API_KEY, stream_poll_interval=0.02) as backend:
        config = config_for(backend.url)
        ids = [Backend(config).invoke_agent(agent_id=AGENT, prompt=f"slow-{i}").id for i in range(9)]
        worker = Worker(handler, configuration=config, agent_id=AGENT, concurrency=3, **FAST)
        worker.start()
        try:
            wait_until(lambda: set(statuses(backend, ids).values()) == {"completed"}, 10, "nine slow tasks")
        finally:
            worker.stop()
            assert worker.join(10)
        assert peak == 3
        (registration,) = backend.workers()
        assert True in registration["capacity_updates"]  # it told the platform it was full


# -- through the command line ------------------------------------------------------------------------------


APP = '''
import time
from xpander_sync.handlers import on_boot, on_shutdown

@on_boot
def boot():
    print("boot hook ran", flush=True)

@on_shutdown
async def bye():
    print("shutdown hook ran", flush=True)

def handle(task):  # undecorated: named on the command line
    text = task.input.text
    if text == "boom":
        raise ValueError("this task always fails")
    if text == "slow":
        time.sleep(1.5)
    task.result = "done: " + text
    task.used_tools = ["tool-a"]
    return task
'''

GUIDE = '''
from xpander_sync import Backend, on_task, Task
from agno.agent import Agent
@on_task
async def my_agent_handler(task: Task):
    backend = Backend(configuration=task.configuration)
    agno_args = await backend.aget_args(agent_id=task.agent_id, agent_version=task.agent_version, task=task)
    agno_agent = Agent(**agno_args)
    message = task.to_message()
    task.result = f"handled: {message}"   # no LLM call in tests
    return task
'''


class WorkerProcess:
    """``python -m xpander_sync worker ...`` against a backend, in empty HOME and working directories."""

    def __init__(self, tmp_path: Path, backend: LocalBackend, source: str, target: str, *extra: str) -> None:
        app_dir, self.home, self.cwd = tmp_path / "app", tmp_path / "home", tmp_path / "cwd"
        for folder in (app_dir, self.home, self.cwd):
            folder.mkdir()
        module = target.split(":")[0]
        (app_dir / f"{module}.py").write_text(textwrap.dedent(source))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("XPANDER_", "IS_"))}
        env.update(
            XPANDER_API_KEY=API_KEY,
            PYTHONPATH=os.pathsep.join([str(app_dir), str(REPO_ROOT)]),
            HOME=str(self.home),
            PYTHONDONTWRITEBYTECODE="1",
            GIT_USERNAME="someone",  # the official SDK would write ~/.git-credentials from these
            GIT_TOKEN="ghp-should-never-be-written",
        )
        command = [sys.executable, "-m", "xpander_sync", "--base-url", backend.url, "--organization-id",
                   "local-org", "worker", target, "--agent-id", AGENT, *extra]
        self.proc = subprocess.Popen(command, cwd=self.cwd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.backend = backend

    def wait_connected(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.backend.workers(connected=True):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                out, err = self.finish(signal.SIGTERM)
                pytest.fail(f"the worker did not connect (exit {self.proc.returncode}):\n{out}\n{err}")
            time.sleep(0.05)

    def finish(self, signum: int, timeout: float = 20.0) -> tuple[str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=5)
            pytest.fail(f"the worker did not exit after signal {signum}:\n{out}\n{err}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_worker_fails_one_task_serves_on_and_drains_on_a_signal(tmp_path: Path, signum: int) -> None:
    with LocalBackend(api_key=API_KEY, stream_poll_interval=0.02) as backend:
        worker = WorkerProcess(tmp_path, backend, APP, "e2e_app:handle", "--concurrency", "2")
        try:
            worker.wait_connected()
            client = Backend(config_for(backend.url))
            boom = client.invoke_agent(agent_id=AGENT, prompt="boom").id
            fine = client.invoke_agent(agent_id=AGENT, prompt="fine").id
            wait_until(lambda: set(statuses(backend, [boom, fine]).values()) <= {"error", "completed"}
                       and "pending" not in statuses(backend, [boom, fine]).values()
                       and "executing" not in statuses(backend, [boom, fine]).values(), 10, "two tasks")
            slow = client.invoke_agent(agent_id=AGENT, prompt="slow").id
            wait_until(lambda: statuses(backend, [slow])[slow] == "executing", 10, "the slow task to start")
        finally:
            out, err = worker.finish(signum)
        assert worker.proc.returncode == 0, err
        tasks = {t["id"]: t for t in backend.tasks()}
        assert tasks[boom]["status"] == "error" and tasks[boom]["result"] == "this task always fails"
        assert tasks[fine]["status"] == "completed" and tasks[fine]["used_tools"] == ["tool-a"]
        assert tasks[slow]["status"] == "completed" and tasks[slow]["result"] == "done: slow"
        assert backend.workers(connected=True) == []
    lines = out.splitlines()
    assert lines[0].startswith("xpander-sync worker: handle for agent agt-openai (concurrency 2)")
    assert lines[1] == "boot hook ran"
    assert lines[-2:] == ["shutdown hook ran", "xpander-sync worker: stopped (2 completed, 1 failed)"]
    assert "registered as worker" in err and "this task always fails" in err  # INFO/WARNING logs on stderr
    assert API_KEY not in out + err
    assert list(worker.home.iterdir()) == [] and list(worker.cwd.iterdir()) == []  # no file written


def test_cli_worker_usage_errors_exit_2(tmp_path: Path) -> None:
    env = dict(os.environ, XPANDER_API_KEY=API_KEY, PYTHONPATH=str(REPO_ROOT))
    cases = [
        (["no_such_module_xyz:handle"], "No module named"),
        (["json:dumps"], "must take a 'task' argument"),
        (["json"], "no @on_task handler is registered in module json"),
    ]
    for target, message in cases:
        command = [sys.executable, "-m", "xpander_sync", "--base-url", "http://127.0.0.1:9", "--organization-id",
                   "local-org", "worker", *target, "--agent-id", AGENT]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and API_KEY not in result.stderr


def test_the_guide_handler_runs_unchanged_through_the_worker(tmp_path: Path) -> None:
    pytest.importorskip("agno")
    with LocalBackend(api_key=API_KEY, stream_poll_interval=0.02) as backend:
        worker = WorkerProcess(tmp_path, backend, GUIDE, "guide_agent")  # MODULE only: its @on_task handler
        try:
            worker.wait_connected(30)
            task_id = Backend(config_for(backend.url)).invoke_agent(agent_id=AGENT, prompt="Find Ada").id
            wait_until(lambda: statuses(backend, [task_id])[task_id] in ("completed", "error"), 30, "the task")
        finally:
            _out, err = worker.finish(signal.SIGTERM)
        stored = backend._store.get_task(task_id)
        assert stored["status"] == "completed", f"{stored['result']}\n{err}"
        assert stored["result"] == "handled: Find Ada"
        assert worker.proc.returncode == 0, err
        # get_args really ran: it loaded the agent and its session DB settings from the backend
        paths = [e["path"] for e in backend.requests_log]
        assert f"/agents/{AGENT}" in paths and f"/agents/{AGENT}/db" in paths


SLEEPER = """
import time
from xpander_sync import on_task

@on_task
def handle(task):
    time.sleep(60)  # killed long before it returns
    return task
"""


def test_a_task_left_executing_by_a_killed_worker_is_marked_at_the_next_start(tmp_path: Path) -> None:
    """Issue 16, finding 14: SIGKILL gives a worker no chance to drain; its task must not stay
    "executing" forever. The next worker started on this machine marks it error."""
    with LocalBackend(api_key=API_KEY, stream_poll_interval=0.02) as backend:
        (tmp_path / "first").mkdir()
        killed = WorkerProcess(tmp_path / "first", backend, SLEEPER, "sleeper:handle")
        killed.wait_connected()
        task_id = Backend(config_for(backend.url)).invoke_agent(agent_id=AGENT, prompt="long").id
        wait_until(lambda: statuses(backend, [task_id])[task_id] == "executing", 10, "the task to start")
        killed.proc.kill()  # SIGKILL: no drain, no shutdown hook
        killed.proc.communicate(timeout=10)
        time.sleep(0.2)
        assert statuses(backend, [task_id])[task_id] == "executing"  # nobody will ever finish it...

        journal = Path(os.environ["XDG_STATE_HOME"]) / "xpander-sync" / "worker"  # the default place
        assert list(journal.rglob("*.json")), "the killed worker left its journal"
        restarted = Worker(handle_task, configuration=config_for(backend.url), agent_id=AGENT,
                           journal_dir=str(journal), handle_signals=False, **FAST).start()
        try:
            wait_until(lambda: statuses(backend, [task_id])[task_id] == "error", 10, "the task to be reclaimed")
            assert "killed" in backend._store.get_task(task_id)["result"]
            assert not list(journal.rglob("*.json"))  # reclaimed once, then forgotten
        finally:
            restarted.stop()
            restarted.join(10)


def handle_task(task: Task) -> Task:
    task.result = "ok"
    return task
