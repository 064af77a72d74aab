"""The real gateway and real simulators on loopback, shared by the integration tests.

One session-scoped stack: simulators for each wire protocol, a gateway in
this process configured with a provider per simulator, and gRPC stubs. Tests
that need a private gateway (shutdown, expiry) build one with
``start_gateway``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from backends.sim import SimConfig, Simulator
from router._proto.meshgate.v1 import admin_pb2_grpc, gateway_pb2_grpc
from router.config import GatewayConfig, parse_config
from router.server import GatewayServer

ADMIN_KEY = "mg-test-admin-0123456789abcdef"
ALICE_KEY = "mg-test-alice-0123456789abcdef"
BOB_KEY = "mg-test-bob-0123456789abcdef"
PROVIDER_KEY = "sk-provider-secret-do-not-leak-42"


def auth(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


def make_config(
    tmp_dir: str, providers: dict[str, Any], routes: dict[str, Any], **extra: Any
) -> GatewayConfig:
    os.environ["MG_TEST_ADMIN_KEY"] = ADMIN_KEY
    os.environ["MG_TEST_ALICE_KEY"] = ALICE_KEY
    os.environ["MG_TEST_BOB_KEY"] = BOB_KEY
    os.environ["MG_TEST_PROVIDER_KEY"] = PROVIDER_KEY
    data: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "metrics_listen": None,
        "state": f"sqlite:///{tmp_dir}/meshgate.db",
        "admin_keys": ["${env:MG_TEST_ADMIN_KEY}"],
        "providers": providers,
        "routes": routes,
        "teams": {"eng": {"groups": ["eng"]}, "ops": {"groups": ["ops"]}},
        "keys": [
            {"name": "alice", "team": "eng", "secret": "${env:MG_TEST_ALICE_KEY}"},
            {"name": "bob", "team": "ops", "secret": "${env:MG_TEST_BOB_KEY}"},
        ],
        **extra,
    }
    return parse_config(data, source="<test>")


async def start_gateway(config: GatewayConfig) -> GatewayServer:
    server = GatewayServer(config)
    await server.start()
    return server


@dataclass
class Stack:
    gateway: GatewayServer
    channel: grpc.aio.Channel
    gw: gateway_pb2_grpc.GatewayStub
    admin: admin_pb2_grpc.AdminStub
    vllm: Simulator
    vllm_b: Simulator
    openai: Simulator
    azure: Simulator
    anthropic: Simulator
    cohere: Simulator


def sim_providers(stack_sims: dict[str, Simulator]) -> dict[str, Any]:
    return {
        "vllm-a": {"kind": "vllm", "base_url": stack_sims["vllm"].url},
        "vllm-b": {"kind": "vllm", "base_url": stack_sims["vllm_b"].url},
        "openai": {
            "kind": "openai",
            "base_url": stack_sims["openai"].url,
            "api_key": "${env:MG_TEST_PROVIDER_KEY}",
        },
        "azure": {
            "kind": "azure",
            "base_url": stack_sims["azure"].url,
            "api_key": "${env:MG_TEST_PROVIDER_KEY}",
            "api_version": "2024-10-21",
        },
        "anthropic": {
            "kind": "anthropic",
            "base_url": stack_sims["anthropic"].url + "/v1",
            "api_key": "${env:MG_TEST_PROVIDER_KEY}",
        },
        "cohere": {
            "kind": "cohere",
            "base_url": stack_sims["cohere"].url + "/v2",
            "api_key": "${env:MG_TEST_PROVIDER_KEY}",
        },
        "nowhere": {"kind": "vllm", "base_url": "http://127.0.0.1:9/v1", "connect_timeout_s": 2},
    }


ROUTES: dict[str, Any] = {
    "chat": {"type": "chat", "targets": [{"provider": "vllm-a", "model": "sim-llama"}], "allow": ["eng"]},
    "complete": {
        "type": "completion",
        "targets": [{"provider": "vllm-a", "model": "sim-llama"}],
        "allow": ["eng"],
    },
    "embed": {
        "type": "embedding",
        "targets": [{"provider": "vllm-a", "model": "sim-llama"}],
        "allow": ["eng"],
    },
    "ops-only": {"type": "chat", "targets": [{"provider": "vllm-a", "model": "sim-llama"}], "allow": ["ops"]},
    "gpt": {"type": "chat", "targets": [{"provider": "openai", "model": "gpt-sim"}], "allow": ["eng"]},
    "azure": {"type": "chat", "targets": [{"provider": "azure", "model": "gpt-sim"}], "allow": ["eng"]},
    "claude": {
        "type": "chat",
        "targets": [{"provider": "anthropic", "model": "claude-sim"}],
        "allow": ["eng"],
    },
    "command": {
        "type": "chat",
        "targets": [{"provider": "cohere", "model": "command-sim"}],
        "allow": ["eng"],
    },
    # The first target always fails with HTTP 503 and is tried first almost
    # every time (weight 1000 : 1); the second one serves.
    "failover": {
        "type": "chat",
        "targets": [
            {"provider": "vllm-a", "model": "error-503", "weight": 1000},
            {"provider": "vllm-b", "model": "sim-llama", "weight": 1},
        ],
        "allow": ["eng"],
    },
    "dead": {"type": "chat", "targets": [{"provider": "nowhere", "model": "sim-llama"}], "allow": ["eng"]},
    "cut": {"type": "chat", "targets": [{"provider": "vllm-a", "model": "cut-3"}], "allow": ["eng"]},
    "stall": {"type": "chat", "targets": [{"provider": "vllm-a", "model": "stall-2"}], "allow": ["eng"]},
    "bad-openai-key": {
        "type": "chat",
        "targets": [{"provider": "openai", "model": "error-401"}],
        "allow": ["eng"],
    },
    "registered": {"type": "chat", "targets": [{"provider": "", "model": "hosted-model"}], "allow": ["eng"]},
    "everyone": {"type": "chat", "targets": [{"provider": "vllm-a", "model": "sim-llama"}], "allow": ["*"]},
}


@pytest.fixture(scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    sims = {
        "vllm": Simulator(SimConfig(protocol="vllm", models=("sim-llama",), answer="digest", tokens=12)),
        "vllm_b": Simulator(SimConfig(protocol="vllm", models=("sim-llama",), answer="digest", tokens=12)),
        "openai": Simulator(
            SimConfig(protocol="openai", models=("gpt-sim",), api_key=PROVIDER_KEY, tokens=8)
        ),
        "azure": Simulator(SimConfig(protocol="azure", models=("gpt-sim",), api_key=PROVIDER_KEY, tokens=8)),
        "anthropic": Simulator(
            SimConfig(protocol="anthropic", models=("claude-sim",), api_key=PROVIDER_KEY, tokens=8)
        ),
        "cohere": Simulator(
            SimConfig(protocol="cohere", models=("command-sim",), api_key=PROVIDER_KEY, tokens=8)
        ),
    }
    for sim in sims.values():
        await sim.start()
    config = make_config(str(tmp_path_factory.mktemp("gateway")), sim_providers(sims), ROUTES)
    gateway = await start_gateway(config)
    channel = grpc.aio.insecure_channel(gateway.address)
    yield Stack(
        gateway=gateway,
        channel=channel,
        gw=gateway_pb2_grpc.GatewayStub(channel),
        admin=admin_pb2_grpc.AdminStub(channel),
        **sims,
    )
    await channel.close()
    await gateway.stop(grace_s=1)
    for sim in sims.values():
        await sim.stop()
