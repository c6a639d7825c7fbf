"""``examples/cron/`` (docs/guides/cron.md): each crontab line run by ``/bin/sh`` as cron runs it."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from xpander_sync.local import LocalBackend

from .conftest import EXAMPLES, closed_port_url, xpander_settings

CRONTAB = EXAMPLES / "cron" / "crontab"


def crontab() -> tuple:
    """``(variables, commands)`` of the example crontab, with cron's ``%`` rules applied."""
    variables: Dict[str, str] = {}
    commands: List[str] = []
    for line in CRONTAB.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        assignment = re.match(r"^([A-Z_]+)=(.*)$", line)
        if assignment:
            variables[assignment.group(1)] = assignment.group(2)
            continue
        command = line.split(None, 5)[5]
        # cron turns a bare % into a newline (the rest becomes stdin); \% into %
        assert not re.search(r"(?<!\\)%", command), f"bare % in: {command}"
        commands.append(command.replace("\\%", "%"))
    return variables, commands


def cli_dir() -> str:
    """The folder holding the ``xpander-sync`` console script of this environment."""
    here = Path(sys.executable).with_name("xpander-sync")
    found = str(here) if here.exists() else shutil.which("xpander-sync")
    if not found:
        pytest.skip("the xpander-sync console script is not installed (pip install -e .)")
    return str(Path(found).parent)


class CronHome:
    """A user's home as the crontab expects it: the env file, ``bin/report_run.sh``, the job."""

    def __init__(self, root: Path):
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        (root / ".config").mkdir()
        shutil.copy(EXAMPLES / "cron" / "report_run.sh", self.bin / "report_run.sh")
        self.job(output="exported 42 rows", status=0)

    def job(self, *, output: str, status: int) -> None:
        script = self.bin / "nightly-export"
        script.write_text(f"#!/bin/sh\necho 'starting export'\necho {shlex.quote(output)}\nexit {status}\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)

    def credentials(self, values: Dict[str, str]) -> None:
        lines = [f"export {name}={shlex.quote(value)}\n" for name, value in values.items()]
        (self.root / ".config" / "xpander.env").write_text("".join(lines))

    def run(self, command: str) -> subprocess.CompletedProcess:
        variables, _ = crontab()
        env = {"HOME": str(self.root), "PATH": f"{cli_dir()}:{variables['PATH']}", "LANG": "C.UTF-8"}
        return subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=60)

    def log(self) -> str:
        return (self.root / "nightly-export.log").read_text()


@pytest.fixture
def home(tmp_path, xpander_backend):
    cron_home = CronHome(tmp_path)
    cron_home.credentials(xpander_settings(xpander_backend))
    return cron_home


def test_crontab_has_the_three_lines():
    variables, commands = crontab()
    assert set(variables) == {"PATH"} and len(commands) == 3
    assert "report_run.sh" in commands[0] and commands[1].endswith("|| true")
    assert "xpander-sync run" in commands[2] and commands[2].endswith("|| true")


def test_nightly_line_reports_the_job(home, xpander_backend):
    nightly = crontab()[1][0]

    done = home.run(nightly)

    assert done.returncode == 0, done.stderr + home.log()
    assert home.log() == "starting export\nexported 42 rows\n"
    (report,) = xpander_backend.reports()
    body = report["body"]
    assert report["agent_id"] == "agt-openai" and body["input"] == "nightly export"
    assert body["result"] == "exported 42 rows" and body["is_success"] is True and body["duration"] >= 0


def test_a_failed_job_is_reported_failed_and_keeps_its_status(home, xpander_backend):
    home.job(output="export failed: disk full", status=4)

    done = home.run(crontab()[1][0])

    assert done.returncode == 4  # cron sees the job's own status
    (report,) = xpander_backend.reports()
    assert report["body"]["is_success"] is False and report["body"]["result"] == "export failed: disk full"


def test_heartbeat_line(home, xpander_backend):
    done = home.run(crontab()[1][1])

    assert done.returncode == 0, done.stderr
    (report,) = xpander_backend.reports()
    assert report["body"]["input"] == "heartbeat"
    assert re.fullmatch(r"alive at \d\d:\d\d", report["body"]["result"])  # \% became % for date


def test_platform_down_queues_and_the_next_run_delivers(tmp_path):
    nightly, heartbeat = crontab()[1][:2]
    url = closed_port_url()  # the platform's address; nothing answers there yet
    home = CronHome(tmp_path)
    home.credentials({"XPANDER_BASE_URL": url, "XPANDER_API_KEY": "xpk-cron", "XPANDER_AGENT_ID": "agt-openai"})

    assert home.run(heartbeat).returncode == 0  # exit 3 (queued), swallowed by || true
    assert home.run(nightly).returncode == 0  # the job itself worked
    assert "report queued in the outbox; the next run delivers it" in home.log()
    queued = [row["task_id"] for row in json.loads(home.run("xpander-sync outbox list --json").stdout)]
    assert len(queued) == 2

    port = int(url.rsplit(":", 1)[1])
    with LocalBackend(port=port, db_path=str(tmp_path / "platform.sqlite3"), api_key="xpk-cron") as platform:
        assert home.run(nightly).returncode == 0  # the platform is back

        delivered = [r["body"]["id"] for r in platform.reports()]
    assert delivered[:2] == queued and len(delivered) == 3  # queued ones first, with their own ids
    assert json.loads(home.run("xpander-sync outbox list --json").stdout) == []


def test_agent_line_runs_the_agent_and_reports_its_tokens(home, xpander_backend):
    pytest.importorskip("agno", reason="the sample agent is an agno agent")
    from xpander_sync.testing import ScriptedModel, Usage, answer

    model = xpander_backend.local.mount_llm(ScriptedModel([answer("3 tickets, all closed", usage=Usage(40, 9))]))

    done = home.run(crontab()[1][2])

    assert done.returncode == 0, done.stderr
    document = json.loads((home.root / "nightly-agent.log").read_text())
    assert document["result"] == "3 tickets, all closed" and document["is_success"] is True
    assert model.requests and model.requests[0].mentions("Summarise yesterday's tickets")
    (report,) = xpander_backend.reports()
    body = report["body"]
    assert report["agent_id"] == "agt-openai" and body["input"] == "Summarise yesterday's tickets"
    assert body["tokens"]["prompt_tokens"] == 40 and body["tokens"]["completion_tokens"] == 9
    assert body["result"] == "3 tickets, all closed" and document["report"]["id"] == body["id"]
