#!/usr/bin/env bash
# `make serve`: a simulated vLLM host on :8001 and the gateway on :50051 with
# the embedded defaults (SQLite in .meshgate/, route "chat" on model sim-llama).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .meshgate
if [ ! -f .meshgate/demo.env ]; then
  umask 077
  {
    echo "MESHGATE_ADMIN_KEY=mg-admin-$(head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
    echo "MESHGATE_DEMO_KEY=mg-demo-$(head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
  } > .meshgate/demo.env
fi
set -a; . .meshgate/demo.env; set +a

.venv/bin/meshgate sim --protocol vllm --port 8001 --model sim-llama --tokens 48 --ttft-ms 40 --itl-ms 15 &
sim=$!
trap 'kill $sim 2>/dev/null || true' EXIT INT TERM

cat <<MSG

  Meshgate demo: a simulated vLLM host on 127.0.0.1:8001, the gateway on 127.0.0.1:50051.
  In another terminal, paste:

    MESHGATE_KEY=$MESHGATE_DEMO_KEY .venv/bin/meshgate chat --route chat "Tell me about gRPC"

  Admin (keys, routes, backends):  MESHGATE_ADMIN_KEY=$MESHGATE_ADMIN_KEY .venv/bin/meshgate backends list
  Metrics: http://127.0.0.1:9464/metrics        Stop: Ctrl-C

MSG
.venv/bin/meshgate serve
