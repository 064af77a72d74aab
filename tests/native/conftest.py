"""One suite, two implementations: every test taking ``impl`` runs against the
pure-Python twin and the compiled extension (skipped, with the reason, when
the extension is not built)."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest


def _load(name: str) -> ModuleType:
    try:
        return importlib.import_module(f"router.native.{name}")
    except ImportError as exc:
        pytest.skip(f"router.native._native is not built ({exc}); build it with `pip install -e .`")


@pytest.fixture(scope="session", params=["_py", "_native"], ids=["python", "native"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """The module implementing the decoders: ``router.native._py`` or ``router.native._native``."""
    return _load(request.param)


@pytest.fixture(scope="session")
def both() -> tuple[ModuleType, ModuleType]:
    """Both implementations, for differential tests: (twin, native)."""
    return _load("_py"), _load("_native")
