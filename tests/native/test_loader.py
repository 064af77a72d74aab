"""The loader: which implementation router.native exports, and why."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from types import ModuleType

import pytest

PROBE = (
    "import logging; logging.basicConfig(level=logging.INFO, format='%(name)s %(message)s')\n"
    "import router.native as n\n"
    "print(n.IMPLEMENTATION, n.SseDecoder.__module__, n.OpenAIStreamDecoder.__module__, sorted(n.__all__))\n"
)


def probe(**env: str) -> tuple[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env={**os.environ, **env}, capture_output=True, text=True, check=True
    )
    return done.stdout.strip(), done.stderr


def test_env_var_forces_the_twin() -> None:
    out, log = probe(MESHGATE_NATIVE="0")
    names = "['IMPLEMENTATION', 'OpenAIStreamDecoder', 'REASON', 'SseDecoder']"
    assert out == f"python router.native._py router.native._py {names}"
    assert "meshgate.native using the python implementation: MESHGATE_NATIVE=0" in log


def test_the_extension_is_preferred() -> None:
    pytest.importorskip("router.native._native", reason="router.native._native is not built")
    out, log = probe(MESHGATE_NATIVE="1")
    assert out.split()[:3] == ["native", "router.native._native", "router.native._native"]
    assert log.count("meshgate.native using the native implementation") == 1


def test_large_feeds_from_threads(impl: ModuleType) -> None:
    # Feeds of 64 KiB and more run without the GIL in the native build.
    data = b'data: {"choices":[{"index":0,"delta":{"content":"' + b"x" * 200_000 + b'"}}]}\n\n'
    results: list[str] = []

    def work() -> None:
        d = impl.OpenAIStreamDecoder()
        results.append(d.feed(data)[0])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["x" * 200_000] * 4
