"""Fixtures for the whole suite; they live in ``harness.py`` (a unique module name:
``tests/simulator`` has a conftest of its own, so ``import conftest`` is ambiguous)."""

from __future__ import annotations

from harness import clock, live_world, moto_url, projection, world

__all__ = ["clock", "live_world", "moto_url", "projection", "world"]
