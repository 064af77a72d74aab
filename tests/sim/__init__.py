"""Tests of the simulator (backends.sim) against the official SDKs and the wire reference."""
