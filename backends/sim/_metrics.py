"""vLLM's Prometheus metrics, as the simulator keeps and renders them.

Names, types and the ``model_name`` label follow vLLM (reference §1.5). The
counters are updated once per request (never per token); the gauges for
waiting requests and KV-cache use come from the config so routing tests can
set them; ``vllm:num_requests_running`` is the real number of generations in
progress. Rendered as Prometheus text format 0.0.4.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

TTFT_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
E2E_BUCKETS: tuple[float, ...] = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
    40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
FINISHED_REASONS: tuple[str, ...] = ("stop", "length", "abort")


class Histogram:
    """A Prometheus histogram: cumulative buckets rendered, plain counts kept."""

    __slots__ = ("_bounds", "_counts", "count", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = tuple(bounds)
        self._counts = [0] * (len(self._bounds) + 1)
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self._bounds, value)] += 1
        self.count += 1
        self.total += value

    def lines(self, name: str, labels: str) -> list[str]:
        out: list[str] = []
        cumulative = 0
        for bound, n in zip(self._bounds, self._counts, strict=False):
            cumulative += n
            out.append(f'{name}_bucket{{{labels},le="{bound}"}} {float(cumulative)}')
        out.append(f'{name}_bucket{{{labels},le="+Inf"}} {float(self.count)}')
        out.append(f"{name}_count{{{labels}}} {float(self.count)}")
        out.append(f"{name}_sum{{{labels}}} {self.total}")
        return out


class VllmMetrics:
    """The counters behind ``GET /metrics``. Not thread-safe: use from one loop."""

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.finished: dict[str, int] = dict.fromkeys(FINISHED_REASONS, 0)
        self.ttft = Histogram(TTFT_BUCKETS)
        self.e2e = Histogram(E2E_BUCKETS)

    def first_token(self, ttft_s: float) -> None:
        self.ttft.observe(ttft_s)

    def finished_request(self, reason: str, prompt_tokens: int, generation_tokens: int, e2e_s: float) -> None:
        """Account one generation: ``reason`` is ``stop``, ``length`` or ``abort``."""
        self.prompt_tokens += prompt_tokens
        self.generation_tokens += generation_tokens
        self.finished[reason] = self.finished.get(reason, 0) + 1
        self.e2e.observe(e2e_s)

    def render(self, model: str, *, running: int, waiting: int, kv_cache_usage: float) -> bytes:
        """The exposition text, every sample labelled ``model_name=model``."""
        label = 'model_name="' + model.replace("\\", "\\\\").replace('"', '\\"') + '"'
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[str]) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(samples)

        metric(
            "vllm:num_requests_running",
            "gauge",
            "Number of requests in model execution batches.",
            [f"vllm:num_requests_running{{{label}}} {float(running)}"],
        )
        metric(
            "vllm:num_requests_waiting",
            "gauge",
            "Number of requests waiting to be processed.",
            [f"vllm:num_requests_waiting{{{label}}} {float(waiting)}"],
        )
        metric(
            "vllm:kv_cache_usage_perc",
            "gauge",
            "KV-cache usage. 1 means 100 percent usage.",
            [f"vllm:kv_cache_usage_perc{{{label}}} {float(kv_cache_usage)}"],
        )
        metric(
            "vllm:num_preemptions",
            "counter",
            "Cumulative number of preemption from the engine.",
            [f"vllm:num_preemptions_total{{{label}}} 0.0"],
        )
        metric(
            "vllm:prefix_cache_queries",
            "counter",
            "Prefix cache queries, in terms of number of tokens.",
            [f"vllm:prefix_cache_queries_total{{{label}}} {float(self.prompt_tokens)}"],
        )
        metric(
            "vllm:prefix_cache_hits",
            "counter",
            "Prefix cache hits, in terms of number of tokens.",
            [f"vllm:prefix_cache_hits_total{{{label}}} 0.0"],
        )
        metric(
            "vllm:prompt_tokens",
            "counter",
            "Number of prefill tokens processed.",
            [f"vllm:prompt_tokens_total{{{label}}} {float(self.prompt_tokens)}"],
        )
        metric(
            "vllm:generation_tokens",
            "counter",
            "Number of generation tokens processed.",
            [f"vllm:generation_tokens_total{{{label}}} {float(self.generation_tokens)}"],
        )
        metric(
            "vllm:request_success",
            "counter",
            "Count of successfully processed requests.",
            [
                f'vllm:request_success_total{{finished_reason="{reason}",{label}}} {float(n)}'
                for reason, n in self.finished.items()
            ],
        )
        metric(
            "vllm:time_to_first_token_seconds",
            "histogram",
            "Histogram of time to first token in seconds.",
            self.ttft.lines("vllm:time_to_first_token_seconds", label),
        )
        metric(
            "vllm:e2e_request_latency_seconds",
            "histogram",
            "Histogram of e2e request latency in seconds.",
            self.e2e.lines("vllm:e2e_request_latency_seconds", label),
        )
        lines.append("")
        return "\n".join(lines).encode()
