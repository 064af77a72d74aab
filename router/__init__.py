"""Meshgate: a high-throughput async gRPC gateway for large language models.

Public surface for applications: ``router.client`` (``GatewayClient``,
``SyncGatewayClient``, ``AdminClient``) and the errors in ``router.errors``.
Everything else is the gateway's own machinery; ``ARCHITECTURE.md`` maps it.
"""

__version__ = "0.1.0"
