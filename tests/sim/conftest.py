"""Fixtures for the simulator's tests: real simulators on 127.0.0.1, port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from backends.sim import SimConfig, Simulator
from tests.sim.simtools import StartSim


@pytest.fixture
async def start_sim() -> AsyncIterator[StartSim]:
    """``await start_sim(protocol=..., **config)``: a started simulator, stopped after the test."""
    started: list[Simulator] = []

    async def start(**config: Any) -> Simulator:
        if "models" in config:
            config["models"] = tuple(config["models"])
        sim = Simulator(SimConfig(**config))
        await sim.start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        await sim.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
