"""Upstream adapters, one per wire protocol, behind ``backends.base.Backend``;
and the simulator (``backends.sim``) that plays each protocol for tests."""
