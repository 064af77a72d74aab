"""Pure parts of the simulator: answers, behaviour names, templates, config."""

from __future__ import annotations

import random

import orjson
import pytest

from backends.sim import LOREM, SimConfig, digest
from backends.sim._answers import estimate_prompt_tokens, make_answer
from backends.sim._behaviour import Overrides, overrides_for, resolve
from backends.sim._config import problems
from backends.sim._sse import TEXT, USAGE, Template


def answer(**kw: object) -> tuple[tuple[str, ...], str, str | None]:
    args: dict[str, object] = {
        "mode": "lorem",
        "tokens": 5,
        "max_tokens": None,
        "stop": (),
        "digest_text": "",
        "prompt_tokens": 1,
    }
    args.update(kw)
    a = make_answer(**args)  # type: ignore[arg-type]
    return a.tokens, a.finish, a.stop_sequence


def test_answers() -> None:
    assert answer() == (("Lorem", " ipsum", " dolor", " sit", " amet"), "stop", None)
    assert answer(max_tokens=2) == (("Lorem", " ipsum"), "length", None)
    assert answer(max_tokens=5) == (answer()[0], "stop", None)
    assert answer(max_tokens=0) == ((), "length", None)
    assert answer(mode="digest", tokens=2, digest_text="hi") == ((digest("hi"), " Lorem"), "stop", None)
    assert answer(stop=["dolor"]) == (("Lorem", " ipsum"), "stop_sequence", "dolor")
    assert answer(stop=["m ip"]) == (("Lorem",), "stop_sequence", "m ip")  # spans two tokens
    assert answer(stop=["zzz", ""]) == (answer()[0], "stop", None)
    assert len(answer(tokens=200)[0]) == 200 and answer(tokens=200)[0][len(LOREM)] == " " + LOREM[0]
    assert digest("hi") == "8f434346"
    assert estimate_prompt_tokens(["a b", " c "], 2) == 5


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("error-503", Overrides(error_status=503)),
        ("cut-3", Overrides(fault="cut", fault_after=3)),
        ("stall-0", Overrides(fault="stall", fault_after=0)),
        ("fail-4", Overrides(fault="fail", fault_after=4)),
        ("slow-20+cut-10", Overrides(fault="cut", fault_after=10, itl_ms=20.0)),
        ("ttft-5+tokens-7", Overrides(ttft_ms=5.0, tokens=7)),
        ("error-200", None),
        ("gpt-4o", None),
        ("cut-x", None),
        ("slow-20+llama", None),
        ("", None),
    ],
)
def test_behaviour_names(name: str, expected: Overrides | None) -> None:
    assert overrides_for(name) == expected


def test_resolve_prefers_the_name() -> None:
    config = SimConfig(cut_after=5, itl_ms=10, tokens=9, error_rate=0.0)
    rng = random.Random(0)
    plain = resolve(config, "sim-model", rng)
    assert (plain.fault, plain.fault_after, plain.itl_s, plain.tokens) == ("cut", 5, 0.01, 9)
    named = resolve(config, "stall-1+slow-1000", rng)
    assert (named.fault, named.fault_after, named.itl_s) == ("stall", 1, 1.0)
    assert resolve(SimConfig(error_rate=1.0, error_status=502), "sim-model", rng).error_status == 502
    assert resolve(SimConfig(error_rate=1.0), "error-429", rng).error_status == 429


def test_template_fills_holes_in_any_key_order() -> None:
    plain = Template({"a": 1, "text": TEXT})
    assert plain.fill(b'"hi"') == b'data: {"a":1,"text":"hi"}\n\n'
    named = Template({"z": TEXT, "b": USAGE}, (TEXT, USAGE), sort_keys=True, event=b"delta")
    assert named.fill(b'"x"', b"{}") == b'event: delta\ndata: {"b":{},"z":"x"}\n\n'
    assert orjson.loads(named.fill(b'"x"', b"{}").split(b"data: ")[1]) == {"b": {}, "z": "x"}


def test_config_problems_name_every_field() -> None:
    bad = SimConfig(
        protocol="grpc",
        models=(),
        tokens=-1,
        answer="poem",
        error_rate=1.5,
        error_status=200,
        kv_cache_usage=2.0,
        cut_after=-1,
        port=70000,
    )
    found = " ".join(problems(bad))
    for field in (
        "protocol",
        "models",
        "tokens",
        "answer",
        "error_rate",
        "error_status",
        "kv_cache_usage",
        "cut_after",
        "port",
    ):
        assert field + ":" in found
    assert problems(SimConfig()) == []
