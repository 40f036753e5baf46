"""``make bench``: run every benchmark module (or those named) and print a summary."""

from __future__ import annotations

import importlib
import json
import sys
import time

ORDER = ["ingest", "stream", "alerts", "predict", "web", "e2e"]


def main(argv: list[str]) -> int:
    names = argv or ORDER
    failed = []
    for name in names:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.{name}" and not argv:
                continue
            raise
        started = time.monotonic()
        print(f"== bench {name}", flush=True)
        try:
            result = module.main()
        except Exception as exc:  # report and go on with the other benchmarks
            print(f"   FAILED: {type(exc).__name__}: {exc}", flush=True)
            failed.append(name)
            continue
        shown = {k: v for k, v in result.items() if k not in ("machine", "date", "git", "command")}
        print(json.dumps(shown, indent=2)[:3000])
        print(f"   ({time.monotonic() - started:.0f} s, bench/results/{name}.json)", flush=True)
    from bench.report import main as render_report

    print(f"== report: {render_report()}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
