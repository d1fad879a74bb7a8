r"""``fleet_node``: one model serving several robots (a GPU server listening for a fleet).

Parameter ``robots`` (a list of namespaces; config/fleet.yaml) on the fleet's own node,
``audio_interaction_fleet``.
Each robot gets an interaction node named ``audio_interaction`` in ``/<robot>``: exactly the
topics, services, parameters, lifecycle and diagnostics of an ``interaction_node`` started in that
namespace (``/robot1/audio`` in, ``/robot1/audio_interaction/speech`` out, ...), with its own
sessions, backlog and counters. The nodes share one ``ModelHost``, so the weights are loaded once
(by the first robot to configure) and freed when the last robot cleans up, and each robot is a
stream of the host's one engine: every robot's due chunk goes through ONE batched forward per
tick (a flood gets no more turns than anyone and overflows only its own backlog). The fleet's
node reports that step on /diagnostics (rows per forward, its cost). One process, one executor:
a thread per robot takes that robot's callbacks, so a robot whose callbacks are busy (a flood of
audio) does not hold up another's.

    ros2 run audio_interaction_ros fleet_node --ros-args -p robots:="[robot1, robot2]" \
        --params-file config/interaction.yaml -p model:=zhifeixie/AudioInteraction

Parameters given to the process (``-p``, ``--params-file`` with ``/**/audio_interaction``) reach
every robot; a ``/robot2/audio_interaction:`` block in a parameter file reaches robot2 only.
"""
from __future__ import annotations

import sys

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.exceptions import InvalidNamespaceException
from rclpy.node import Node
from rclpy.validate_namespace import validate_namespace

from .interaction_node import InteractionNode
from .model_host import ModelHost
from . import messages, params, qos, runtime

FLEET_NODE_NAME = "audio_interaction_fleet"


def robot_namespaces(robots: list[str]) -> list[str]:
    """Absolute namespaces of ``robots`` (``robot1`` -> ``/robot1``).

    ValueError with the reason for an empty list, an invalid name or a robot named twice.
    """
    if not robots:
        raise ValueError("robots is empty: name the robots' namespaces, e.g. "
                         "robots:=\"[robot1, robot2]\"")
    namespaces = []
    for robot in robots:
        namespace = "/" + robot.strip().strip("/")
        try:
            validate_namespace(namespace)
        except InvalidNamespaceException as exc:
            raise ValueError(f"robots: {robot!r} is not a valid namespace ({exc})") from exc
        if namespace in namespaces:
            raise ValueError(f"robots: {robot!r} is named twice")
        namespaces.append(namespace)
    return namespaces


class FleetNode(Node):
    """The fleet's own node (parameter ``robots``) and the robots' interaction nodes."""

    def __init__(self, **kwargs) -> None:
        super().__init__(FLEET_NODE_NAME, **kwargs)
        for p in params.FLEET.node:
            self.declare_parameter(p.name, p.default, params.descriptor(p))
        self.models = ModelHost()
        self.robots: list[InteractionNode] = []
        try:
            for namespace in robot_namespaces(list(self.get_parameter("robots").value)):
                self.robots.append(InteractionNode(namespace=namespace, models=self.models,
                                                   context=self.context))
        except Exception:
            for robot in self.robots:  # a later robot's bad parameter: undo the earlier ones
                robot.destroy_node()
            raise
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics",
                                                      qos.PERIODIC)
        self.create_timer(self.get_parameter("diagnostics_period_s").value,
                          self._publish_diagnostics)
        self.get_logger().info(f"serving {len(self.robots)} robot(s) with one model: "
                               + ", ".join(r.get_fully_qualified_name() for r in self.robots))

    def _publish_diagnostics(self) -> None:
        """Publish the shared batched step on /diagnostics.

        How many rows (sessions of all robots, replies included) each forward carried and what it
        cost. Each robot's own figures are in its node's status.
        """
        values = {"robots": str(len(self.robots))}
        engines = self.models.engines
        for k, engine in enumerate(engines):
            batch = engine.batch_stats()
            prefix = f"model{k}." if len(engines) > 1 else ""
            values.update({f"{prefix}model": engine.model.info.source,
                           f"{prefix}streams": str(batch.streams),
                           f"{prefix}forwards": str(batch.forwards),
                           f"{prefix}rows_per_forward_p50": f"{batch.rows_p50:.1f}",
                           f"{prefix}rows_per_forward_max": str(batch.rows_max),
                           f"{prefix}forward_p50_ms": f"{batch.forward_p50_ms:.1f}",
                           f"{prefix}forward_p95_ms": f"{batch.forward_p95_ms:.1f}"})
        message = f"{len(engines)} model(s) loaded" if engines else "no robot configured"
        self._diagnostics_pub.publish(messages.diagnostics(
            self.get_clock().now().to_msg(), f"{self.get_fully_qualified_name()}: batched step",
            "", "OK", message, values))

    @property
    def nodes(self) -> list[Node]:
        """Every node of the fleet, this one first."""
        return [self, *self.robots]


def main(args: list[str] | None = None) -> int:
    """Entry point: ``ros2 run audio_interaction_ros fleet_node``."""
    return runtime.run_nodes(lambda: FleetNode().nodes, "fleet_node", args)


if __name__ == "__main__":
    sys.exit(main())
