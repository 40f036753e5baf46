"""The benchmark's profile tables: self time from py-spy's raw stacks and JFR's printed samples (pure)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

from bench.profile import ROOT, ProcSampler, descendants, jfr_self, process_table, py_spy_self, self_time_table

RAW = f"""\
process 41:"python -m alerts engine";<module> (alerts/__main__.py:9);run ({ROOT}/alerts/engine.py:120);evaluate ({ROOT}/alerts/engine_state.py:300) 30
process 41:"python -m alerts engine";<module> (alerts/__main__.py:9);run ({ROOT}/alerts/engine.py:120);evaluate ({ROOT}/alerts/engine_state.py:301) 10
process 41:"python -m alerts engine";<module> (alerts/__main__.py:9);poll (/x/.venv/lib/python3.11/site-packages/confluent_kafka/consumer.py:50) 60
"""

JFR = """\
jdk.ExecutionSample {
  startTime = 22:50:01.123
  sampledThread = "stream execution thread" (javaThreadId = 57)
  state = "STATE_RUNNABLE"
  stackTrace = [
    org.rocksdb.RocksDB.write0(long, long, long) line: 0
  ]
}

jdk.ExecutionSample {
  startTime = 22:50:01.143
  stackTrace = [
    org.rocksdb.RocksDB.write0(long, long, long) line: 0
  ]
}

jdk.ExecutionSample {
  startTime = 22:50:01.163
  stackTrace = [
    java.util.HashMap.get(Object) line: 557
  ]
}
"""


def test_py_spy_self_time_is_the_innermost_frame_summed_over_lines() -> None:
    samples = py_spy_self(RAW)
    assert samples == Counter({"poll (confluent_kafka/consumer.py)": 60, "evaluate (alerts/engine_state.py)": 40})


def test_jfr_self_time_is_the_top_frame_without_line_numbers() -> None:
    assert jfr_self(JFR) == Counter({"org.rocksdb.RocksDB.write0(long, long, long)": 2,
                                     "java.util.HashMap.get(Object)": 1})


def test_self_time_table_shares_the_process_cores_by_samples() -> None:
    table = self_time_table(py_spy_self(RAW), cores=0.5, top=1)
    assert table["samples"] == 100 and table["cpu_cores"] == 0.5
    assert table["top"] == [{"function": "poll (confluent_kafka/consumer.py)", "samples": 60, "share": 0.6,
                             "cores": 0.3}]
    assert self_time_table(Counter(), cores=0.1)["top"] == []


def test_proc_sampler_sums_a_process_tree() -> None:
    script = ("import subprocess, sys; g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
              "print(g.pid, flush=True); g.wait()")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        grandchild = int(child.stdout.readline())  # the child has started it
        assert set(descendants(child.pid, process_table())) >= {child.pid, grandchild}
        sampler = ProcSampler({"tree": child.pid})
        _, _, rss = sampler.sample()["tree"]
        alone = process_table()[child.pid][2]
        assert rss > alone, "the grandchild's memory counts with its parent's"
        assert sampler.peak["tree"] == rss
    finally:
        child.kill()
        child.wait(10)
        subprocess.run(["kill", str(grandchild)], check=False)
