"""Real processes for the Celery tests and the scale benchmark: a Redis server, Celery workers, the reader.

Standard library only (plus ``redis``/``celery`` in the processes it starts), so ``bench/`` can use it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

PROJECT = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """``redis-server`` on a loopback port, without persistence; :meth:`stop` ends it."""

    def __init__(self, port: Optional[int] = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 10.0) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed (Debian: apt-get install redis-server; .ci/ensure-redis does it, "
                "and tox runs that first)"
            )
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while not redis_ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: {self.process.stderr.read()!r}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


def environment(broker: str, xpander: Dict[str, str], **extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XPANDER_")}
    env.update(xpander)
    env.update(XPANDER_TEST_BROKER=broker, PYTHONPATH=os.pathsep.join(
        [str(PROJECT), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]), **extra)
    return env


def _log(name: str) -> Any:
    """A temporary file for a process's output (a pipe nobody reads would fill up and block it)."""
    return tempfile.TemporaryFile(mode="a+", prefix=f"xpander-{name}-")  # appends: reading never moves a write


def output(process: subprocess.Popen) -> str:
    """What a process started here wrote so far."""
    log = process.log  # type: ignore[attr-defined]
    log.seek(0)
    return str(log.read())


def start_celery_worker(env: Dict[str, str], *, concurrency: int, pool: str = "prefork",
                        name: str = "w1") -> subprocess.Popen:
    """``celery -A proj:app worker --pool POOL --concurrency N`` as a process of its own (stop: :func:`stop`)."""
    log = _log(name)
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "proj:app", "worker", "--pool", pool, "--concurrency",
         str(concurrency), "--loglevel", "INFO", "-n", f"{name}@%h", "--without-gossip", "--without-mingle",
         "--without-heartbeat"],
        cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    process.log = log  # type: ignore[attr-defined]
    return process


#: The stream reader's command line in each host: the CLI, Django's manage.py, Flask's CLI (and their folder).
READERS = {
    "cli": ([sys.executable, "-m", "xpander_sync", "worker"], PROJECT),
    "django": ([sys.executable, "manage.py", "xpander_worker"], PROJECT.parents[2] / "examples" / "django_app"),
    "flask": ([sys.executable, "-m", "flask", "--app", "flask_app", "xpander", "worker"],
              PROJECT.parents[2] / "examples"),
}


def start_reader(env: Dict[str, str], *, handler: str = "handlers:handle", host: str = "cli") -> subprocess.Popen:
    """``xpander-sync worker HANDLER --dispatch celery --celery-app proj:app`` (the stream reader), or the
    same through ``manage.py xpander_worker`` or ``flask xpander worker`` (``host``)."""
    log = _log("reader")
    command, cwd = READERS[host]
    process = subprocess.Popen(
        [*command, handler, "--dispatch", "celery", "--celery-app", "proj:app"],
        cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
    )
    process.log = log  # type: ignore[attr-defined]
    return process


def pool_children(worker: subprocess.Popen) -> List[int]:
    """The prefork pool's process ids (children of the Celery main process)."""
    try:
        text = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text()
    except OSError:
        return []
    return [int(pid) for pid in text.split()]


def stop(process: subprocess.Popen, timeout: float = 20.0) -> str:
    """SIGTERM (a Celery warm shutdown; the reader drains), then SIGKILL; returns its output."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except OSError:
            process.kill()
        process.wait(timeout=10)
    log = getattr(process, "log", None)
    if log is None:
        return ""
    log.seek(0)
    text = str(log.read())
    log.close()
    return text
