"""What the package's lifecycle nodes share: their parameters declared and validated from one
table (params.py), the asr_vosk pattern of ending transitions (one helper tears down what activate
built, another what configure built; shutdown runs both from any state) and reporting each new
problem once in the log while /diagnostics counts them all."""
from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter

from .params import ParamTable, descriptor


class ManagedNodeMixin:
    """Mix in before ``LifecycleNode``; the node sets ``PARAMS``, calls ``_declare_parameters``
    in ``__init__`` and defines ``_teardown_active`` (subscriptions, threads) and
    ``_teardown_configured`` (publishers, models, files), both idempotent."""

    PARAMS: ParamTable
    _seen_reasons: set[str]
    _last_totals: dict[str, float]

    def _declare_parameters(self) -> list[str]:
        """Declare every parameter of ``PARAMS`` with its descriptor, and a block of session
        parameters for each name in ``sessions`` (if the table has them). Every value is checked
        against the table, those given at start (``-p``, a parameter file) included: a bad one
        raises InvalidParameterValueException with the reason. Returns the session names."""
        self.add_on_set_parameters_callback(self._validate_parameters)
        for p in self.PARAMS.node:
            self.declare_parameter(p.name, p.default, descriptor(p))
        sessions: list[str] = []
        if self.PARAMS.per_session:
            sessions = list(self._param("sessions")) or ["assistant"]
            for name in sessions:
                for p in self.PARAMS.per_session:
                    self.declare_parameter(f"{name}.{p.name}", p.default, descriptor(p))
        return sessions

    def _validate_parameters(self, changes: list[Parameter]) -> SetParametersResult:
        """Refuse the whole set if one value breaks its constraint (with the reason); else
        let the node apply what it must beyond storing the value."""
        for change in changes:
            spec = self.PARAMS.lookup(change.name)
            reason = spec.check(change.value) if spec is not None else None
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        self._apply_parameters(changes)
        return SetParametersResult(successful=True)

    def _apply_parameters(self, changes: list[Parameter]) -> None:
        """Hook: act on accepted changes of dynamic parameters (called before they are stored)."""

    def _param(self, name: str) -> Any:
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
        """From any state: tear down whatever exists. What configure built is released even if
        waiting for the worker threads was cut short (a second Ctrl-C, see runtime.py)."""
        try:
            self._teardown_active()
        finally:
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
