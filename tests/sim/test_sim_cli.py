"""The command line: the stdout line, a request, and a clean exit on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys

import aiohttp
import pytest

from backends.sim.cli import add_arguments, config_from_args, run

LINE = re.compile(r"meshgate-sim listening on (http://127\.0\.0\.1:(\d+)) protocol=(\w+)")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_options_make_a_config() -> None:
    config = config_from_args(
        parse(
            "--protocol",
            "cohere",
            "--model",
            "a",
            "--model",
            "b",
            "--error-status",
            "429",
            "--stall-after",
            "2",
            "--itl-ms",
            "5",
        )
    )
    assert (config.protocol, config.models, config.error_status, config.error_rate) == (
        "cohere",
        ("a", "b"),
        429,
        1.0,
    )
    assert (config.stall_after, config.itl_ms) == (2, 5.0)
    assert config_from_args(parse()).error_rate == 0.0


def test_invalid_options_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(parse("--error-rate", "3")) == 2
    assert "error_rate" in capsys.readouterr().err


async def test_python_m_serves_until_sigterm(http: aiohttp.ClientSession) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "backends.sim",
        "--protocol",
        "openai",
        "--model",
        "cli-model",
        "--tokens",
        "3",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        match = LINE.fullmatch(line.strip())
        assert match is not None, line
        assert match.group(3) == "openai"
        body = {"model": "cli-model", "messages": [{"role": "user", "content": "hi"}]}
        async with http.post(match.group(1) + "/v1/chat/completions", json=body) as response:
            assert (await response.json())["choices"][0]["message"]["content"] == "Lorem ipsum dolor"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
