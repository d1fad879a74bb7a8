"""Where an interaction node gets its model: loaded once per process and shared.

A single ``interaction_node`` has a host of its own, so configure loads and cleanup frees the
model as before. ``fleet_node`` gives one host to all its robots' nodes: the first robot to
configure loads the model, the others attach to it (no second copy of 3 B weights), and it is
freed when the last one cleans up. Robots whose ``model``/``device``/``dtype``/``hf_cache_dir``
differ get a model of their own, loaded once for all robots asking for the same. No rclpy here.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..core.model import AudioInteractionModel


@dataclass(frozen=True)
class ModelRequest:
    """The parameters that decide which weights are loaded, and where."""

    model: str
    device: str
    dtype: str
    cache_dir: str = ""


@dataclass
class _Loaded:
    model: AudioInteractionModel
    users: int


class ModelHost:
    """The models of one process, each held while at least one node uses it. Thread-safe: a
    robot that configures while another one loads waits for that load and shares its model."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[ModelRequest, _Loaded] = {}
        self.loads = 0  # how many times weights were read (diagnostics, tests)

    def acquire(self, request: ModelRequest,
                load: Callable[[], AudioInteractionModel]) -> tuple[AudioInteractionModel, bool]:
        """The model ``request`` names, and whether it was loaded just now (by ``load``, whose
        exceptions propagate: nothing is held then)."""
        with self._lock:
            entry = self._loaded.get(request)
            fresh = entry is None
            if fresh:
                entry = _Loaded(load(), 0)
                self.loads += 1
                self._loaded[request] = entry
            entry.users += 1
            return entry.model, fresh

    def release(self, model: AudioInteractionModel) -> None:
        """One user less; the last one's release frees the model (GPU memory included once
        nothing else refers to it)."""
        with self._lock:
            for request, entry in self._loaded.items():
                if entry.model is model:
                    entry.users -= 1
                    if entry.users == 0:
                        del self._loaded[request]
                    return

    def users(self, model: AudioInteractionModel) -> int:
        """How many nodes use ``model`` now."""
        with self._lock:
            return next((e.users for e in self._loaded.values() if e.model is model), 0)
