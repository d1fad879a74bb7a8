"""How every executable of this package runs a node (Humble-compatible: no rclpy.init context
manager): init, build, optionally configure+activate a lifecycle node, spin, and always clean up.
A node that cannot be built (a bad parameter value included) prints one error line and exits 2;
Ctrl-C exits 0."""
from __future__ import annotations

import sys
from collections.abc import Callable

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.node import Node

BUILD_ERRORS: tuple[type[Exception], ...] = (ValueError, ParameterException)


def run(make_node: Callable[[], Node], program: str, args: list[str] | None = None,
        build_errors: tuple[type[Exception], ...] = BUILD_ERRORS) -> int:
    """Spin the node made by ``make_node`` until Ctrl-C or shutdown; the process exit code."""
    rclpy.init(args=args)
    try:
        node = make_node()
    except build_errors as exc:
        print(f"{program}: error: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        if isinstance(node, LifecycleNode) and node.get_parameter("autostart").value:
            if node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                node.trigger_activate()
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException, SystemExit):
        pass
    finally:
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
