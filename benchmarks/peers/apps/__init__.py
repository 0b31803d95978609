"""One worker app per system, each run through its own CLI by ``benchmarks/compare.py``.

Every app reads the broker URL and queue from BENCH_BROKER_URL / BENCH_QUEUE
and runs the same no-op task body: ``marker.done()``.
"""
