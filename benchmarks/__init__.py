"""Meshgate's benchmarks: figures to compare, never pass/fail.

==============================  ===============================================================
``test_*.py``                   pytest-benchmark micro-benchmarks (``pytest benchmarks
                                --benchmark-only``)
``benchmarks.e2e_stream``       end to end: stream answers from the simulator directly and
                                through the gateway in the same run; what the gateway adds
                                (time to first token, end to end, CPU per request)
``benchmarks.run``              everything above, then ``results/SUMMARY.md`` (``make bench``)
==============================  ===============================================================

Results are written to ``benchmarks/results/``; see ``benchmarks/README.md``.
"""
