"""Benchmarks run by ``make bench``; each module's ``main()`` writes ``bench/results/<name>.json``."""
