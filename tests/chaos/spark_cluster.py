"""A Spark standalone cluster on loopback for the fault suite: one master and two workers, started
from the installed pyspark (``bin/spark-class``), each in a process group of its own.

A worker's group holds the worker JVM, the executors it launched and their Python workers, so a
signal to the group reaches all of them at once: ``SIGKILL`` is a machine lost, ``SIGSTOP``
freezes what it runs while a probe looks. Everything binds 127.0.0.1 (``--host`` for the RPC
endpoints, ``SPARK_LOCAL_IP`` for the web UIs, block managers and executors).

What the cluster runs is read as an operator would: the master's JSON (``/json/``: workers, their
state and cores in use, the applications), a worker's JSON (its executors and their applications)
and an executor's ``stderr`` in the worker's work folder (the tasks it started and finished).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyspark

from tests.support import free_port, wait_for

SPARK_CLASS = Path(pyspark.__file__).resolve().parent / "bin" / "spark-class"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
RUNNING_TASK = re.compile(r"Running task (\d+)\.(\d+) in stage (\d+)\.(\d+) \(TID (\d+)\)")
ENDED_TASK = re.compile(r"(?:Finished|Executor killed|Executor interrupted and killed|Exception in) task \S+ in stage "
                        r"\S+ \(TID (\d+)\)")


def get_json(url: str, timeout_s: float = 2.0) -> Any:
    """The JSON a Spark web UI answers at ``url`` (loopback only), or None if it does not answer."""
    assert url.startswith("http://127.0.0.1:"), url
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return json.loads(r.read().decode())
    except (urllib.error.URLError, OSError, ValueError):
        return None


@dataclass
class Node:
    """A master or worker daemon: its command, ports and process (group leader)."""

    name: str
    args: list[str]
    rpc_port: int
    webui_port: int
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def json_url(self) -> str:
        return f"http://127.0.0.1:{self.webui_port}/json/"

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass(frozen=True)
class Task:
    """A task attempt as an executor logs it: ``task <partition>.<attempt> in stage <stage>.<attempt> (TID n)``."""

    tid: int
    partition: int
    attempt: int
    stage: int
    stage_attempt: int

    def __str__(self) -> str:
        return f"TID {self.tid} (task {self.partition}.{self.attempt} of stage {self.stage}.{self.stage_attempt})"


@dataclass
class TaskLog:
    """The tasks an executor started, and those not ended, read from its ``stderr`` as it grows."""

    path: Path
    offset: int = 0
    running: dict[int, Task] = field(default_factory=dict)   # TID -> task
    tasks: list[Task] = field(default_factory=list)          # every task it started
    _rest: str = ""

    @property
    def started(self) -> int:
        return len(self.tasks)

    def read(self) -> dict[int, Task]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except OSError:
            return dict(self.running)
        self.offset += len(chunk)
        text = self._rest + chunk.decode(errors="replace")
        lines = text.split("\n")
        self._rest = lines.pop()  # a line still being written
        for line in lines:
            if m := RUNNING_TASK.search(line):
                p, a, st, sa, tid = map(int, m.groups())
                task = Task(tid, p, a, st, sa)
                self.running[tid] = task
                self.tasks.append(task)
            elif m := ENDED_TASK.search(line):
                self.running.pop(int(m.group(1)), None)
        return dict(self.running)


class SparkCluster:
    """``workers`` workers of ``cores`` cores and ``memory`` each under one master, all on loopback."""

    def __init__(self, workdir: Path, workers: int = 2, cores: int = 1, memory: str = "1g") -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        # the daemons must not find this project or the test's interpreter: an executor gets what
        # the application hands it (spark.executorEnv.*, the driver's PYSPARK_PYTHON), like on a cluster
        self.env = {k: v for k, v in os.environ.items()
                    if k not in {"PYTHONPATH", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON"}}
        self.env.update({"SPARK_LOCAL_IP": "127.0.0.1", "SPARK_DAEMON_MEMORY": "256m"})
        port, ui = free_port(), free_port()
        self.master = Node("master", [MASTER_CLASS, "--host", "127.0.0.1", "--port", str(port),
                                      "--webui-port", str(ui)], port, ui, workdir / "master.log")
        self.workers: list[Node] = []
        for k in range(workers):
            wport, wui = free_port(), free_port()
            work = workdir / f"worker{k}"
            work.mkdir(exist_ok=True)
            self.workers.append(Node(f"worker{k}", [
                WORKER_CLASS, self.url, "--cores", str(cores), "--memory", memory, "--host", "127.0.0.1",
                "--port", str(wport), "--webui-port", str(wui), "--work-dir", str(work)], wport, wui,
                workdir / f"worker{k}.log"))

    @property
    def url(self) -> str:
        """The master URL applications connect to."""
        return f"spark://127.0.0.1:{self.master.rpc_port}"

    # --- processes ---------------------------------------------------------------------------------
    def _launch(self, node: Node) -> None:
        fh = open(node.log, "ab")
        try:
            node.popen = subprocess.Popen([str(SPARK_CLASS), *node.args], env=self.env, cwd=self.workdir,
                                          stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            fh.close()

    def start(self, timeout_s: float = 120) -> None:
        """Start the master, then the workers; return once the master lists every worker ALIVE."""
        self._launch(self.master)
        wait_for(lambda: self.master_json() is not None, timeout_s, "the Spark master's web UI", interval_s=0.2)
        for w in self.workers:
            self._launch(w)
        wait_for(lambda: len(self.alive_workers()) == len(self.workers), timeout_s,
                 f"{len(self.workers)} ALIVE workers at the master", interval_s=0.2)

    def signal(self, k: int, sig: int) -> None:
        """Send ``sig`` to worker ``k``'s whole process group (worker, executors, Python workers)."""
        node = self.workers[k]
        assert node.popen is not None
        os.killpg(node.popen.pid, sig)

    def kill(self, k: int) -> None:
        """SIGKILL worker ``k`` with everything it launched (running or frozen)."""
        node = self.workers[k]
        assert node.popen is not None
        os.killpg(node.popen.pid, signal.SIGKILL)
        node.popen.wait(10)

    def restart(self, k: int, timeout_s: float = 120) -> None:
        """Start worker ``k`` again (same ports, same work folder); wait until the master lists it ALIVE."""
        node = self.workers[k]
        assert not node.alive()
        self._launch(node)
        wait_for(lambda: self.worker_state(k) == "ALIVE", timeout_s, f"{node.name} ALIVE again", interval_s=0.2)

    def stop(self) -> None:
        """SIGTERM every group (workers first), SIGKILL what is left after 20 s."""
        for node in [*self.workers, self.master]:
            if node.alive():
                assert node.popen is not None
                os.killpg(node.popen.pid, signal.SIGTERM)
        for node in [*self.workers, self.master]:
            if node.popen is None:
                continue
            try:
                node.popen.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(node.popen.pid, signal.SIGKILL)
                node.popen.wait(10)
            try:  # executors outlive a worker's SIGTERM for a moment: nothing of the group is left
                os.killpg(node.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # --- what the master and the workers say -------------------------------------------------------
    def master_json(self) -> dict[str, Any] | None:
        got = get_json(self.master.json_url)
        return got if isinstance(got, dict) else None

    def worker_entry(self, k: int) -> dict[str, Any] | None:
        """Worker ``k`` as the master lists it (the latest registration of its RPC port)."""
        doc = self.master_json() or {}
        mine = [w for w in doc.get("workers", []) if int(w.get("port", -1)) == self.workers[k].rpc_port]
        mine.sort(key=lambda w: w.get("state") != "ALIVE")  # a dead registration of the same port last
        return mine[0] if mine else None

    def worker_state(self, k: int) -> str | None:
        entry = self.worker_entry(k)
        return None if entry is None else str(entry.get("state"))

    def alive_workers(self) -> list[dict[str, Any]]:
        doc = self.master_json() or {}
        return [w for w in doc.get("workers", []) if w.get("state") == "ALIVE"]

    def app(self, name: str) -> dict[str, Any] | None:
        """The running application called ``name`` at the master."""
        doc = self.master_json() or {}
        apps = [a for a in doc.get("activeapps", []) if a.get("name") == name]
        return apps[-1] if apps else None

    def executors(self, k: int, app_id: str) -> list[dict[str, Any]]:
        """The executors worker ``k`` runs for ``app_id`` (its own JSON)."""
        doc = get_json(self.workers[k].json_url)
        if not isinstance(doc, dict):
            return []
        return [e for e in doc.get("executors", []) if e.get("appid") == app_id]

    def task_log(self, k: int, app_id: str, executor_id: int) -> TaskLog:
        """The task log of an executor of worker ``k`` (its ``stderr`` in the worker's work folder)."""
        return TaskLog(self.workdir / f"worker{k}" / app_id / str(executor_id) / "stderr")

    def logs(self) -> str:
        return "\n".join(f"--- {n.name}\n{n.tail(15)}" for n in [self.master, *self.workers])
