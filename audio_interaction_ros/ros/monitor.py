"""A node that prints what the interaction node publishes, one line per message (the demo's
output, and a quick check on a robot: ``audio-interaction-bringup --print``)."""
from __future__ import annotations

import time

from diagnostic_msgs.msg import DiagnosticArray
from hri_msgs.msg import LiveSpeech
from rclpy.node import Node
from std_msgs.msg import Bool, Float32, String

from . import qos

DIAGNOSTICS_EVERY_S = 5.0  # a diagnostics line this often, or when the level changes


class Monitor(Node):
    """Subscribes to ``<target>/...`` outputs and prints them as they arrive."""

    def __init__(self, target: str, sessions: list[str], print_line=print) -> None:
        super().__init__("audio_interaction_monitor")
        self._print = print_line
        self._chunks: dict[str, int] = {}
        base = target.rstrip("/")
        for name in sessions:
            self.create_subscription(Float32, f"{base}/{name}/speak_probability",
                                     lambda m, n=name: self._on_probability(n, m), qos.TEXT)
        for topic in ("reply", "transcript", "sound_events"):
            self.create_subscription(LiveSpeech, f"{base}/{topic}",
                                     lambda m, t=topic: self._on_live(t, m), qos.TEXT)
        self.create_subscription(String, f"{base}/speech",
                                 lambda m: self._print(f"[speech]      {m.data}"), qos.TEXT)
        self.create_subscription(Bool, f"{base}/is_replying",
                                 lambda m: self._print(f"[is_replying] {m.data}"), qos.LATCHED)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics,
                                 qos.PERIODIC)
        self._last_level = None
        self._last_diag_s = 0.0

    def _on_probability(self, session: str, msg: Float32) -> None:
        k = self._chunks.get(session, 0)
        self._chunks[session] = k + 1
        verdict = "SPEAK " if msg.data >= 0.5 else "silent"
        self._print(f"[decision]    {session} chunk {k:4d} ({(k + 1) * 0.4:6.1f} s): {verdict} "
                    f"p_speak={msg.data:.3f}")

    def _on_live(self, topic: str, msg: LiveSpeech) -> None:
        if msg.final:
            self._print(f"[{topic}]  final: {msg.final!r} (confidence {msg.confidence:.3f}, "
                        f"{msg.locale})")
        else:
            self._print(f"[{topic}]  ...    {msg.incremental!r}")

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if "audio interaction" not in status.name:
                continue
            values = {kv.key: kv.value for kv in status.values}
            line = (f"[diagnostics] level={int.from_bytes(status.level, 'little')} "
                    f"{status.message}; RTF {values.get('real_time_factor')}, decision p50 "
                    f"{values.get('decision_latency_p50_ms')} ms, backlog "
                    f"{values.get('backlog_s')} s")
            now = time.monotonic()
            level_changed = status.level != self._last_level
            if level_changed or now - self._last_diag_s >= DIAGNOSTICS_EVERY_S:
                self._last_level, self._last_diag_s = status.level, now
                self._print(line)
