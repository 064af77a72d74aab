"""Benchmark helpers shared by every benchmark module.

Benchmarks that compare the compiled module with its pure-Python twin put
both in one ``benchmark.group`` and set ``benchmark.extra_info["implementation"]``
to ``"native"`` or ``"python"``; after pytest-benchmark's table this prints,
for each such group, the median of each and the python/native ratio.
"""

from __future__ import annotations

from typing import Any

import pytest


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    session = getattr(config, "_benchmarksession", None)
    if session is None or not getattr(session, "benchmarks", None):
        return
    medians: dict[str, dict[str, float]] = {}
    for bench in session.benchmarks:
        impl = bench.extra_info.get("implementation")
        if impl in ("native", "python") and bench.stats is not None:
            medians.setdefault(bench.group or bench.name, {})[impl] = bench.stats.median
    pairs = {group: m for group, m in medians.items() if len(m) == 2}
    if not pairs:
        return
    terminalreporter.section("native vs python (median per call)")
    for group, m in sorted(pairs.items()):
        terminalreporter.write_line(
            f"{group}: python {m['python'] * 1e6:9.1f} µs   native {m['native'] * 1e6:9.1f} µs   "
            f"native is {m['python'] / m['native']:.1f}x faster"
        )
