"""Every benchmark, then a summary: what ``make bench`` runs.

    python -m benchmarks.run                 # micro-benchmarks, then the end-to-end scenario
    python -m benchmarks.run --quick         # the same, briefly (a smoke run)
    python -m benchmarks.run -- --no-pin     # options after -- go to benchmarks.e2e_stream

1. the pytest-benchmark micro-benchmarks in ``benchmarks/test_*.py`` →
   ``results/micro.json``;
2. ``benchmarks.e2e_stream`` (gateway against direct) → ``results/gateway_vs_direct.json``;
3. ``results/SUMMARY.md``: the key figures of both.

Figures to compare, never pass/fail: a micro-benchmark that fails is reported
and the rest still run; the exit status is not 0 only when the end-to-end
scenario cannot run at all (the simulator or the gateway does not start).
A step left out (``--skip-micro``, ``--skip-e2e``) is summarised from its last
results, if any.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks import e2e_stream

RESULTS = e2e_stream.RESULTS
MICRO_JSON = RESULTS / "micro.json"
SUMMARY = RESULTS / "SUMMARY.md"

# The aims, printed next to the figures (never a verdict).
AIMS = (
    ("added TTFT p50 at concurrency 1", "< 1 ms"),
    ("gateway CPU per 64-token request", "< 1.5 ms"),
)


def run_micro(quick: bool) -> dict[str, Any]:
    """pytest-benchmark over ``benchmarks/``; returns what happened."""
    MICRO_JSON.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "pytest", str(e2e_stream.REPO / "benchmarks"), "-q", "--benchmark-only",
        f"--benchmark-json={MICRO_JSON}", "-p", "no:cacheprovider",
    ]  # fmt: skip
    if quick:
        command += ["--benchmark-min-rounds=3", "--benchmark-max-time=0.05", "--benchmark-warmup=off"]
    print("$ " + " ".join(command), file=sys.stderr, flush=True)
    status = subprocess.run(command, cwd=e2e_stream.REPO).returncode
    if status == 5:  # pytest: no tests collected
        return {"status": status, "note": "no micro-benchmarks collected"}
    return {"status": status, "note": "" if status == 0 else f"pytest exited {status}: see its output above"}


def micro_rows(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    data = orjson.loads(path.read_bytes())
    rows = []
    for bench in sorted(data.get("benchmarks", []), key=lambda b: (b.get("group") or "", b["fullname"])):
        st = bench["stats"]
        rows.append([
            bench["fullname"].removeprefix("benchmarks/"),
            f"{st['median'] * 1e6:.2f}",
            f"{st['mean'] * 1e6:.2f}",
            f"{st['stddev'] * 1e6:.2f}",
            f"{st['ops']:,.0f}",
            str(st["rounds"]),
        ])  # fmt: skip
    return rows


def markdown(head: list[str], body: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [line(head), "|" + "---|" * len(head), *(line(r) for r in body)]


def aim_lines(e2e: dict[str, Any]) -> list[str]:
    """The issue's aims next to the matching figures of the first implementation."""
    if not e2e.get("results"):
        return []
    block = e2e["results"][0]
    burst = [s for s in block["scenarios"] if s["scenario"] == "burst"]
    impl = block["implementation"]
    lines = []
    for s in burst:
        if s["concurrency"] == 1:
            added = s["combined"]["added_ttft_ms"].get("p50", math.nan)
            lines.append(f"- aim: {AIMS[0][0]} {AIMS[0][1]}; measured {added:.3f} ms ({impl})")
    if burst:
        cpu = ", ".join(
            f"{s['combined']['gateway_cpu_ms_per_request']:.3f} ms at c={s['concurrency']}" for s in burst
        )
        lines.append(f"- aim: {AIMS[1][0]} {AIMS[1][1]}; measured {cpu} ({impl})")
    return lines


def summary(e2e: dict[str, Any] | None, micro: dict[str, Any] | None) -> str:
    lines = ["# Benchmark summary", ""]
    lines.append(
        f"Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `python -m benchmarks.run` "
        "(`make bench`). Figures to compare, never pass/fail; ratios within one run are what to read on a "
        "noisy machine. Details: `gateway_vs_direct.json`, `micro.json`, `../README.md`."
    )
    lines.append("")
    if e2e is not None:
        cond, host, versions = e2e["conditions"], e2e["host"], e2e["versions"]
        commit = e2e["git"].get("commit", "")[:12] + (
            " (uncommitted changes)" if e2e["git"].get("dirty") else ""
        )
        lines += [
            "## Gateway against direct (`benchmarks/e2e_stream.py`)",
            "",
            f"- run: {e2e['mode']} mode, {e2e['started_at']}, commit {commit}",
            f"- host: {host['cpus']} CPUs ({host['cpu_model']}), {host['platform']}; pinning: "
            + (
                ", ".join(f"{k} on CPU {','.join(map(str, v))}" for k, v in cond["pinning"].items())
                if isinstance(cond["pinning"], dict)
                else str(cond["pinning"])
            ),
            "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
            f"- {cond['tokens_per_answer']} tokens per answer from the simulator (vLLM protocol); "
            f"{cond['phases_per_path']} alternating phases per path; "
            + "; ".join(
                f"{s['name']} c={s['concurrency']}: {s['requests_per_path']} requests per path "
                f"({s['sim_delays']})"
                for s in cond["scenarios"]
            ),
            "- native module as the gateway loaded it: "
            + ", ".join(f"{b['implementation']} ({b['implementation_reason']})" for b in e2e["results"]),
            "",
        ]
        head, body = e2e_stream.table_cells(e2e)
        lines += markdown(head, body)
        lines.append("")
        lines += [f"- {line}" for line in e2e_stream.per_message_lines(e2e)]
        lines += aim_lines(e2e)
        errors = [
            f"{b['implementation']} {s['scenario']} c={s['concurrency']} {path}: "
            f"{s['combined'][path]['errors']}"
            for b in e2e["results"]
            for s in b["scenarios"]
            for path in ("direct", "gateway")
            if s["combined"][path]["errors"]
        ]
        lines.append("- failed requests: " + ("; ".join(errors) if errors else "none"))
        lines.append("")
        profile = e2e_stream.profile_table(e2e, limit=15)
        if profile:
            lines += ["### Where the gateway's CPU goes (py-spy)", "", "```", profile, "```", ""]
    if micro is not None:
        lines += ["## Micro-benchmarks (`pytest benchmarks --benchmark-only`)", ""]
        rows = micro_rows(MICRO_JSON)
        if rows:
            lines += markdown(["benchmark", "median µs", "mean µs", "stddev µs", "ops/s", "rounds"], rows)
        else:
            lines.append(micro.get("note") or "no results")
        if micro.get("note") and rows:
            lines += ["", micro["note"]]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    own, rest = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run of everything (seconds, not minutes)")
    p.add_argument(
        "--skip-micro", action="store_true", help="leave out the pytest-benchmark micro-benchmarks"
    )
    p.add_argument("--skip-e2e", action="store_true", help="leave out the end-to-end scenario")
    args = p.parse_args(own)
    RESULTS.mkdir(parents=True, exist_ok=True)
    micro = None if args.skip_micro else run_micro(args.quick)
    e2e = None
    if not args.skip_e2e:
        e2e_args = e2e_stream.parse_args([*(["--quick"] if args.quick else []), *rest])
        plan = e2e_stream.plan_from(e2e_args)
        e2e = e2e_stream.run(plan)
        print(e2e_stream.table(e2e))
        profile = e2e_stream.profile_table(e2e)
        if profile:
            print("\n" + profile)
    if e2e is None and e2e_stream.DEFAULT_OUT.exists():  # skipped: summarise the last run's
        e2e = orjson.loads(e2e_stream.DEFAULT_OUT.read_bytes())
    if micro is None and MICRO_JSON.exists():
        micro = {"status": 0, "note": "from an earlier run (skipped this time)"}
    SUMMARY.write_text(summary(e2e, micro))
    print(f"\nwritten: {SUMMARY}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
