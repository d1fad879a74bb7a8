"""Where an interaction node gets its model and engine: loaded once per process and shared.

A single ``interaction_node`` has a host of its own, so configure loads and cleanup frees the
model as before. ``fleet_node`` gives one host to all its robots' nodes: the first robot to
configure loads the model and starts its engine, the others attach to them (no second copy of
3 B weights), and both are freed when the last robot cleans up. Every node is a stream of that
one engine, so all robots' due chunks go through one batched forward per tick (core/engine.py).
Robots whose ``model``/``device``/``dtype``/``hf_cache_dir`` differ get a model and engine of
their own, shared by all robots asking for the same. No rclpy here.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..core.engine import Engine
from ..core.model import AudioInteractionModel

ENGINE_STOP_S = 30.0  # the last user waits this long for replies in progress to end


@dataclass(frozen=True)
class ModelRequest:
    """The parameters that decide which weights are loaded, and where."""

    model: str
    device: str
    dtype: str
    cache_dir: str = ""


@dataclass
class _Loaded:
    engine: Engine
    users: int


class ModelHost:
    """The models of one process, each with its engine, held while at least one node uses it.

    Each engine runs on its own thread. Thread-safe: a robot that configures while another one
    loads waits for that load and shares its model.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[ModelRequest, _Loaded] = {}
        self.loads = 0  # how many times weights were read (diagnostics, tests)

    def acquire(self, request: ModelRequest,
                load: Callable[[], AudioInteractionModel]) -> tuple[Engine, bool]:
        """Return the engine of the model ``request`` names, and whether it was loaded just now.

        ``engine.model`` is the model; it is loaded by ``load``, whose exceptions propagate
        (nothing is held then). Add the node's stream to it with ``add_stream``.
        """
        with self._lock:
            entry = self._loaded.get(request)
            fresh = entry is None
            if fresh:
                entry = _Loaded(Engine(load()), 0)
                entry.engine.start()
                self.loads += 1
                self._loaded[request] = entry
            entry.users += 1
            return entry.engine, fresh

    def release(self, engine: Engine) -> bool:
        """One user less (its streams removed already).

        The last one's release stops the engine and frees the model (GPU memory included once
        nothing else refers to it). False if the engine's thread did not end within ENGINE_STOP_S.
        """
        with self._lock:
            for request, entry in self._loaded.items():
                if entry.engine is engine:
                    entry.users -= 1
                    if entry.users > 0:
                        return True
                    del self._loaded[request]
                    break
            else:
                return True
        return engine.stop(timeout_s=ENGINE_STOP_S)

    def users(self, engine: Engine) -> int:
        """How many nodes use ``engine`` now."""
        with self._lock:
            return next((e.users for e in self._loaded.values() if e.engine is engine), 0)

    @property
    def engines(self) -> list[Engine]:
        """The engines held now (the fleet's diagnostics report their batched steps)."""
        with self._lock:
            return [e.engine for e in self._loaded.values()]
