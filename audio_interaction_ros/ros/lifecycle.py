"""What the package's lifecycle nodes share: the asr_vosk pattern of ending transitions (one
helper tears down what activate built, another what configure built; shutdown runs both from any
state) and reporting each new problem once in the log while /diagnostics counts them all."""
from __future__ import annotations

from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn


class ManagedNodeMixin:
    """Mix in before ``LifecycleNode``; the node defines ``_teardown_active`` (subscriptions,
    threads) and ``_teardown_configured`` (publishers, models, files), both idempotent."""

    _seen_reasons: set[str]
    _last_totals: dict[str, float]

    def _param(self, name: str):
        """A parameter's current value."""
        return self.get_parameter(name).value

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Undo activate -> inactive (lifecycle publishers switch off in super())."""
        self._teardown_active()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Undo configure -> unconfigured."""
        self._teardown_configured()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """From any state: tear down whatever exists."""
        self._teardown_active()
        self._teardown_configured()
        return TransitionCallbackReturn.SUCCESS

    def _log_once(self, reason: str, detail: str) -> None:
        """First occurrence of each reason is logged; all are counted in /diagnostics."""
        if reason not in self._seen_reasons:
            self._seen_reasons.add(reason)
            self.get_logger().warning(f"{detail} (counted in /diagnostics; logged once)")

    def _worsened(self, totals: dict[str, float]) -> list[str]:
        """Which counters grew since the last diagnostics period (WARN only for news)."""
        worse = [k for k, v in totals.items() if v > self._last_totals.get(k, 0)]
        self._last_totals = totals
        return worse
