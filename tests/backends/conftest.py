"""Fixtures of the adapter tests (helpers live in ``tests.backends.support``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.backends.support import FakeUpstream


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    server = await FakeUpstream().start()
    yield server
    await server.stop()
