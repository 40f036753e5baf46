"""Where each core goes: CPU and memory per process from /proc, and CPU profiles per process.

:class:`ProcSampler` sums CPU seconds and RSS over each stack process's whole
tree (Spark's JVM and its Python workers included). :func:`profile_processes`
samples every Python process with py-spy (``record --nonblocking --format raw``;
``--subprocesses`` so gunicorn's worker, Celery's children and Spark's Python
workers count with their parent) and a JVM with Java Flight Recorder
(``jcmd <pid> JFR.start``, read back with ``jfr print``), all over the same
window, and turns each into a table of functions by self time: the share of
that process's samples in which the function was the innermost frame, and that
share of the cores the process used in the window (from /proc).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY_SPY = Path(sys.executable).parent / "py-spy"
TOP = 8

Usage = dict[str, tuple[float, float, int]]  # name -> (t, cpu seconds, rss bytes)


def _stat(pid: int | str) -> tuple[int, float, int] | None:
    """(parent pid, CPU seconds, RSS bytes) of one process, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    tick_hz, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / tick_hz, int(fields[21]) * page


def process_table() -> dict[int, tuple[int, float, int]]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            s = _stat(entry)
            if s is not None:
                out[int(entry)] = s
    return out


def descendants(root: int, procs: dict[int, tuple[int, float, int]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in procs:
            out.append(pid)
            todo.extend(children.get(pid, []))
    return out


def service_roots() -> dict[str, int]:
    """The shared services the stack runs on: the Kafka broker (``kafka.Kafka``), Redis and the
    PostgreSQL postmaster, found by their command lines (the broker of a worktree's bench runs
    from the main checkout's ``var/``). The whole service is counted, not only this stack's share
    of it; a service not running, or running more than once, is left out."""
    patterns = {"kafka broker": (b"java", b"kafka.Kafka"), "redis": (b"redis-server",),
                "postgresql": (b"postgres", b"-D")}
    found: dict[str, list[int]] = {name: [] for name in patterns}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for name, needles in patterns.items():
            if argv and needles[0] in argv[0] and all(any(n in a for a in argv) for n in needles[1:]):
                found[name].append(int(entry.name))
    return {name: pids[0] for name, pids in found.items() if len(pids) == 1}


class ProcSampler:
    """CPU seconds and RSS of each named process, its whole process tree summed."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self.peak: dict[str, int] = {}
        self.lock = threading.Lock()

    def sample(self) -> Usage:
        procs = process_table()
        now = time.time()
        current = {}
        for name, root in self.roots.items():
            tree = descendants(root, procs)
            current[name] = (now, sum(procs[p][1] for p in tree), sum(procs[p][2] for p in tree))
        with self.lock:
            for name, (_, _, rss) in current.items():
                self.peak[name] = max(self.peak.get(name, 0), rss)
        return current

    def reset_peaks(self) -> None:
        with self.lock:
            self.peak = {}


def usage(before: Usage, after: Usage, peak: dict[str, int]) -> dict[str, dict[str, float | None]]:
    out = {}
    for name, (t1, cpu1, rss1) in after.items():
        t0, cpu0, _ = before.get(name, (t1, cpu1, rss1))
        out[name] = {"cpu_cores": round((cpu1 - cpu0) / (t1 - t0), 2) if t1 > t0 else None,
                     "rss_mib_peak": round(max(peak.get(name, 0), rss1) / 2**20, 1)}
    return out


# --- self time from samples ----------------------------------------------------------------------

_PY_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::\d+)?\)$")


def short_path(path: str) -> str:
    for marker in ("site-packages/", "lib/python3."):
        if marker in path:
            return path.split(marker, 1)[1] if marker == "site-packages/" else "stdlib/" + path.split(marker, 1)[1].split("/", 1)[-1]
    root = str(ROOT) + "/"
    return path[len(root):] if path.startswith(root) else path


def py_spy_self(raw: str) -> Counter[str]:
    """Samples by innermost frame ("function (file)") from py-spy's ``--format raw`` (collapsed stacks)."""
    out: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        m = _PY_FRAME.match(leaf)
        out[f"{m.group('func')} ({short_path(m.group('file'))})" if m else leaf] += int(count)
    return out


def jfr_self(printed: str) -> Counter[str]:
    """Samples by innermost frame from ``jfr print --events jdk.ExecutionSample``."""
    out: Counter[str] = Counter()
    lines = printed.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "stackTrace = [" and i + 1 < len(lines):
            frame = lines[i + 1].strip()
            if frame and frame != "]":
                out[re.sub(r"\s+line: \d+.*$", "", frame)] += 1
    return out


def self_time_table(samples: Counter[str], cores: float | None, top: int = TOP) -> dict[str, Any]:
    total = sum(samples.values())
    rows = [{"function": f, "samples": n, "share": round(n / total, 3),
             "cores": round(n / total * cores, 3) if cores is not None else None}
            for f, n in samples.most_common(top)] if total else []
    return {"samples": total, "cpu_cores": cores, "top": rows}


# --- recording ---------------------------------------------------------------------------------


def jvm_pid(root: int) -> int | None:
    """The first ``java`` process in ``root``'s tree (Spark's driver JVM under ``python -m stream``)."""
    procs = process_table()
    for pid in descendants(root, procs):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "java":
                return pid
        except OSError:
            continue
    return None


def profile_processes(roots: dict[str, int], seconds: float, rate_hz: int, out_dir: Path) -> dict[str, Any]:
    """Profile every named process (and Spark's JVM) at once for ``seconds``; self-time tables by name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    jvms = {f"{name} (JVM)": pid for name, root in roots.items() if (pid := jvm_pid(root)) is not None}
    jfr_ok = shutil.which("jcmd") is not None and shutil.which("jfr") is not None
    cpu_before = {name: _cpu(pid, tree=True) for name, pid in roots.items()}
    cpu_before.update({name: _cpu(pid, tree=False) for name, pid in jvms.items()})
    started = time.time()
    spies = {}
    for name, pid in roots.items():
        raw = out_dir / f"{name}.pyspy.txt"
        spies[name] = (raw, subprocess.Popen(
            [str(PY_SPY), "record", "--nonblocking", "--subprocesses", "--rate", str(rate_hz), "--duration",
             str(int(seconds)), "--format", "raw", "--output", str(raw), "--pid", str(pid)],
            stdout=subprocess.DEVNULL, stderr=open(out_dir / f"{name}.pyspy.log", "wb")))
    recordings = {}
    failed: dict[str, str] = {}
    if jfr_ok:
        for name, pid in jvms.items():
            path = out_dir / f"{name.split()[0]}.jfr"
            try:  # jcmd attaches to the JVM: slow on a loaded machine
                subprocess.run(["jcmd", str(pid), "JFR.start", "name=bench", "settings=profile",
                                f"duration={int(seconds)}s", f"filename={path}"], capture_output=True, timeout=90)
                recordings[name] = path
            except (subprocess.TimeoutExpired, OSError) as exc:
                failed[name] = f"JFR did not start: {exc}"
    for _, proc in spies.values():
        try:
            proc.wait(seconds + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
    elapsed = time.time() - started
    cores = {name: round((_cpu(pid, tree=name not in jvms) - cpu_before[name]) / elapsed, 3)
             for name, pid in {**roots, **jvms}.items()}
    tables: dict[str, Any] = {}
    for name, (raw, _) in spies.items():
        py_cores = cores[name] - sum(cores[j] for j in jvms if j.startswith(f"{name} "))
        text = raw.read_text(errors="replace") if raw.exists() else ""
        tables[name] = {**self_time_table(py_spy_self(text), round(max(py_cores, 0.0), 3)),
                        "profiler": f"py-spy {rate_hz} Hz, --subprocesses", "raw": str(raw)}
    for name, why in failed.items():
        tables[name] = {**self_time_table(Counter(), cores[name]), "profiler": why}
    for name, path in recordings.items():
        deadline = time.monotonic() + 30
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.5)  # JFR writes the file when its duration ends
        printed = subprocess.run(["jfr", "print", "--events", "jdk.ExecutionSample", "--stack-depth", "1", str(path)],
                                 capture_output=True, text=True, timeout=120).stdout if path.exists() else ""
        tables[name] = {**self_time_table(jfr_self(printed), cores[name]), "profiler": "JFR (settings=profile)",
                        "raw": str(path)}
    return {"seconds": round(elapsed, 1), "tables": tables}


def _cpu(pid: int, tree: bool) -> float:
    if not tree:
        s = _stat(pid)
        return s[1] if s else 0.0
    procs = process_table()
    return sum(procs[p][1] for p in descendants(pid, procs))
