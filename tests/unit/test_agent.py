"""The registration agent's pure parts: reading vLLM's load, and where its metrics are.

The agent against the real gateway and a real simulator is tested in
tests/integration/test_agent.py.
"""

from __future__ import annotations

import pytest

from backends.sim._metrics import VllmMetrics
from router.agent import metrics_url_for, parse_load
from router.domain import BackendLoad

# vLLM ≥ 0.10 with two engines, a newer metric whose name starts like an old
# one, the pre-0.10 KV-cache name beside the new one, and a counter whose name
# only starts with a gauge's.
TWO_ENGINES = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="llama"} 3.0
vllm:num_requests_running{engine="1",model_name="llama"} 2.0
vllm:num_requests_waiting{engine="0",model_name="llama"} 1.0
vllm:num_requests_waiting_by_reason{reason="x"} 9.0
vllm:kv_cache_usage_perc{engine="0",model_name="llama"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="llama"} 0.5
vllm:gpu_cache_usage_perc{model_name="llama"} 0.9
vllm:num_requests_running_total 100
"""


def test_requests_are_summed_over_engines_and_the_kv_cache_is_the_fullest() -> None:
    assert parse_load(TWO_ENGINES) == BackendLoad(running_requests=5, waiting_requests=1, kv_cache_usage=0.5)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the pre-0.10 name alone; a brace inside a label value; a timestamp after the value
        ('vllm:gpu_cache_usage_perc{a="}b"} 0.7 123456\n', BackendLoad(0, 0, 0.7)),
        # no labels at all
        ("vllm:num_requests_running 2\n", BackendLoad(2, 0, 0.0)),
        # a space inside a label value; a fraction over 1 is clamped
        ('vllm:kv_cache_usage_perc{x="a b"} 1.5\n', BackendLoad(0, 0, 1.0)),
        # negative gauges are clamped to 0
        ("vllm:num_requests_waiting -3\nvllm:kv_cache_usage_perc -0.5\n", BackendLoad(0, 0, 0.0)),
        # counts are rounded, not truncated
        ("vllm:num_requests_waiting 2.6\n", BackendLoad(0, 3, 0.0)),
        # indentation and blank lines
        ("\n   vllm:num_requests_running 4\n\n", BackendLoad(4, 0, 0.0)),
    ],
)
def test_load_lines_in_their_every_form(text: str, expected: BackendLoad) -> None:
    assert parse_load(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "other 1\n# c\n",
        "vllm:num_requests_running NaN\n",
        "vllm:num_requests_running\n",
        "vllm:num_requests_running many\n",
        "# vllm:num_requests_running 3\n",
    ],
)
def test_text_without_a_readable_load_is_none(text: str) -> None:
    assert parse_load(text) is None


def test_the_new_kv_cache_name_wins_over_the_old_one() -> None:
    text = "vllm:gpu_cache_usage_perc 0.9\nvllm:kv_cache_usage_perc 0.2\n"
    assert parse_load(text) == BackendLoad(0, 0, 0.2)


def test_the_simulators_metrics_read_back_as_the_load_they_render() -> None:
    text = VllmMetrics().render("hosted-model", running=3, waiting=2, kv_cache_usage=0.3).decode()
    assert parse_load(text) == BackendLoad(running_requests=3, waiting_requests=2, kv_cache_usage=0.3)


@pytest.mark.parametrize(
    ("url", "metrics"),
    [
        ("http://10.0.0.7:8000/v1", "http://10.0.0.7:8000/metrics"),
        ("https://h/x/v1/", "https://h/metrics"),
        ("http://[::1]:8000/v1", "http://[::1]:8000/metrics"),
        ("http://host:8000", "http://host:8000/metrics"),
    ],
)
def test_metrics_are_at_the_origin_of_the_api_url(url: str, metrics: str) -> None:
    assert metrics_url_for(url) == metrics
