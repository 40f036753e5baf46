"""Run Procfile processes as real subprocesses for end-to-end and fault tests.

Each :class:`Stack` gets its own topic prefix, var folder, SQLite database and
Celery queue, so stacks of different tests never see each other. Commands
come from the Procfile itself (so the tests prove the Procfile), run through
``bash -c 'exec ...'`` so signals reach the Python process.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path


from tests.support import free_port, wait_for

__all__ = ["ROOT", "Proc", "Stack", "free_port", "procfile", "wait_for"]  # the last two re-exported

ROOT = Path(__file__).resolve().parents[2]


def procfile(path: Path = ROOT / "Procfile") -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([a-z_]+):\s*(.+)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


@dataclass
class Proc:
    name: str
    command: str
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    metrics_port: int = 0

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass
class Stack:
    workdir: Path
    env: dict[str, str]
    procs: dict[str, Proc] = field(default_factory=dict)

    @classmethod
    def create(cls, workdir: Path, prefix: str, **extra_env: str) -> "Stack":
        workdir.mkdir(parents=True, exist_ok=True)
        venv_bin = str(Path(sys.executable).parent)
        env = {
            **os.environ,
            "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(ROOT),
            "PYSPARK_PYTHON": sys.executable,
            "KAFKA_TOPIC_PREFIX": prefix,
            "KAFKA_PARTITIONS": "2",
            "TICKERBELL_VAR": str(workdir / "var"),
            "DATABASE_URL": f"sqlite:///{workdir / 'tickerbell.db'}",
            "ALERTS_QUEUE": f"q-{prefix.rstrip('.')}",
            "LOG_LEVEL": "INFO",
            "SPARK_LOCAL_IP": "127.0.0.1",  # Spark's driver would otherwise bind the host's interface address
            **extra_env,
        }
        return cls(workdir, env)

    def run(self, command: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a one-shot command (e.g. the release phase) in the stack's environment."""
        return subprocess.run(["bash", "-c", command], env=self.env, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout_s)

    def start(self, name: str, command: str | None = None, **env: str) -> Proc:
        command = command or procfile()[name]
        port = free_port()
        proc_env = {**self.env, "METRICS_PORT": str(port), **env}
        log = self.workdir / f"{name}.log"
        proc = Proc(name, command, proc_env, log, metrics_port=port)
        fh = open(log, "ab")
        proc.popen = subprocess.Popen(["bash", "-c", command if command.startswith("exec ") else f"exec {command}"], env=proc_env, cwd=ROOT, stdout=fh,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def signal(self, name: str, sig: int) -> None:
        proc = self.procs[name]
        if proc.alive():
            os.killpg(proc.popen.pid, sig)  # type: ignore[union-attr]

    def stop(self, name: str, timeout_s: float = 30) -> int:
        """SIGTERM the process and wait; returns its exit code (fails if it does not stop in time)."""
        proc = self.procs[name]
        if proc.popen is None:
            return 0
        if proc.alive():
            self.signal(name, signal.SIGTERM)
        try:
            return proc.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.signal(name, signal.SIGKILL)
            proc.popen.wait(10)
            raise AssertionError(f"{name} did not stop within {timeout_s} s of SIGTERM:\n{proc.tail()}")

    def kill(self, name: str) -> None:
        self.signal(name, signal.SIGKILL)
        self.procs[name].popen.wait(10)  # type: ignore[union-attr]

    def restart(self, name: str) -> Proc:
        old = self.procs[name]
        return self.start(name, old.command)

    def stop_all(self) -> None:
        for name in list(self.procs):
            if self.procs[name].alive():
                try:
                    self.stop(name, 20)
                except AssertionError:
                    pass

    def metrics(self, name: str) -> str:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.procs[name].metrics_port}/metrics", timeout=2) as r:
                return str(r.read().decode())
        except (urllib.error.URLError, OSError):
            return ""
