"""How every executable of this package runs a node (Humble-compatible: no rclpy.init context
manager): init, build, optionally configure+activate a lifecycle node, spin, and always clean up.
A node that cannot be built prints one error line and exits 2; Ctrl-C exits 0."""
from __future__ import annotations

import sys
from collections.abc import Callable

import rclpy
from rclpy.executors import (ExternalShutdownException, MultiThreadedExecutor,
                             SingleThreadedExecutor)
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.node import Node


def run(make_node: Callable[[], Node], program: str, args: list[str] | None = None,
        build_errors: tuple[type[Exception], ...] = (ValueError,)) -> int:
    """Spin the node made by ``make_node`` until Ctrl-C or shutdown; the process exit code."""
    return run_nodes(lambda: [make_node()], program, args, build_errors)


def run_nodes(make_nodes: Callable[[], list[Node]], program: str,
              args: list[str] | None = None,
              build_errors: tuple[type[Exception], ...] = (ValueError,)) -> int:
    """``run`` for the nodes of one process (fleet_node): one executor with a thread per node
    when there are several (each node's callbacks are mutually exclusive, so one node's slow
    callback holds up no other node); each lifecycle node with ``autostart`` is configured and
    activated; all are torn down at the end, the last built first."""
    rclpy.init(args=args)
    try:
        nodes = make_nodes()
    except build_errors as exc:
        print(f"{program}: error: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = SingleThreadedExecutor() if len(nodes) == 1 else \
        MultiThreadedExecutor(num_threads=len(nodes))
    for node in nodes:
        executor.add_node(node)
    try:
        for node in nodes:
            if isinstance(node, LifecycleNode) and node.get_parameter("autostart").value:
                if node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                    node.trigger_activate()
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException, SystemExit):
        pass
    finally:
        for node in reversed(nodes):
            close_node(node)
        rclpy.try_shutdown()
    return 0


def close_node(node: Node) -> None:
    """Tear down a node of this package from any state: lifecycle shutdown, release devices."""
    if isinstance(node, LifecycleNode):
        node.on_shutdown(None)
    if hasattr(node, "close"):
        node.close()
    node.destroy_node()
