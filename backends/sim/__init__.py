"""The simulator: a real HTTP server that plays an upstream model server byte
for byte (reference: ``wire-protocols.md`` §0, §1, §4.1, §4.3–4.5), for the
gateway's tests, its demo and its load benchmarks.

Public surface::

    from backends.sim import Simulator, SimConfig, SimStats

    async with Simulator(SimConfig(protocol="vllm", models=("sim-llama",))) as sim:
        sim.url        # SDK base URL: http://127.0.0.1:PORT/v1 (vllm, openai) or the origin
        sim.stats      # SimStats snapshot, also GET /sim/stats
        sim.set(error_rate=0.5)                 # or assign sim.config.error_rate
        await sim.wait_for(lambda s: s.streams_aborted >= 1, timeout_s=5)

Protocols (one per server), with their routes:

==========  ==========================================================================
vllm        POST /v1/chat/completions, /v1/completions, /v1/embeddings, /tokenize,
            /detokenize; GET /health, /ping, /load, /version, /v1/models, /metrics
openai      POST /v1/chat/completions, /v1/completions, /v1/embeddings; GET /v1/models
azure       POST /openai/deployments/{deployment}/chat/completions|completions|embeddings
            ?api-version=...
anthropic   POST /v1/messages; GET /v1/models
cohere      POST /v2/chat; GET /v1/models
all         GET /health (200, or 503 when unhealthy), GET /sim/stats
==========  ==========================================================================

Behaviour by model name (any protocol, whatever the flags; parts join with
``+``, e.g. ``slow-20+cut-10``; for Azure the deployment name):

==============  ======================================================================
``error-CODE``  answer HTTP CODE (400..599) in the protocol's error shape
``cut-N``       send N tokens, then abort the TCP connection (no terminator)
``stall-N``     send N tokens, then hang without closing (until the client leaves)
``fail-N``      send N tokens, then the protocol's in-band error event
``slow-MS``     MS milliseconds between tokens
``ttft-MS``     MS milliseconds before the first token
``tokens-N``    answer N tokens
==============  ======================================================================

Faults fire after N tokens or after the last token, whichever comes first,
always before the finish event. Non-streamed requests wait for the whole
answer's time, then cut, stall, or (``fail``) answer 500.
"""

from backends.sim._answers import LOREM, digest
from backends.sim._config import ANSWERS, SimConfig
from backends.sim._server import Simulator
from backends.sim._stats import SimStats

__all__ = ["ANSWERS", "LOREM", "SimConfig", "SimStats", "Simulator", "digest"]
