"""How every executable of this package runs its nodes, Humble-compatible.

No rclpy.init context manager: init, build, optionally configure+activate a lifecycle node,
spin, and always clean up. A node that cannot be built (a bad parameter value included) prints
one error line and exits 2.

Stopping. rclpy's own signal handler shuts the context down the moment SIGINT arrives, so a
node's teardown could no longer publish its last state (the speech node's ``is_speaking: false``,
without which a listener stays muted) and died with "publisher's context is invalid". Here SIGINT
and SIGTERM only ask the spin loop to end: the nodes are torn down while the context is still
valid, then rclpy shuts down, and the process exits 0 whatever the node was doing. A second
signal interrupts what still waits (worker threads finishing a reply); what configure built is
released all the same.
"""
from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import (Executor, ExternalShutdownException, MultiThreadedExecutor,
                             SingleThreadedExecutor)
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

BUILD_ERRORS: tuple[type[Exception], ...] = (ValueError, ParameterException)
# A Python signal handler runs only when the main thread is back from rcl_wait, which nothing but
# a timeout ends: the spin loop wakes this often to notice a stop request.
STOP_POLL_S = 0.2
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """SIGINT/SIGTERM as a flag the spin loop polls; a second signal raises KeyboardInterrupt."""

    def __init__(self) -> None:
        self._event = threading.Event()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def __call__(self, signum: int, frame: object) -> None:
        if self._event.is_set():
            raise KeyboardInterrupt  # asked twice: stop waiting for anything
        self._event.set()


def init(args: list[str] | None = None) -> StopRequest:
    """``rclpy.init`` without rclpy's signal handlers, and ours installed instead (main thread)."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = StopRequest()
    for sig in STOP_SIGNALS:
        signal.signal(sig, stop)
    return stop


def spin(executor: Executor, stop: StopRequest,
         done: Callable[[], bool] = lambda: False) -> None:
    """Run callbacks until a stop is requested, the context shuts down or ``done()``."""
    while not stop.requested and executor.context.ok() and not done():
        executor.spin_once(timeout_sec=STOP_POLL_S)


def run(make_node: Callable[[], Node], program: str, args: list[str] | None = None,
        build_errors: tuple[type[Exception], ...] = BUILD_ERRORS) -> int:
    """Spin the node made by ``make_node`` until Ctrl-C or shutdown; the process exit code."""
    return run_nodes(lambda: [make_node()], program, args, build_errors)


def run_nodes(make_nodes: Callable[[], list[Node]], program: str,
              args: list[str] | None = None,
              build_errors: tuple[type[Exception], ...] = BUILD_ERRORS) -> int:
    """``run`` for the nodes of one process (fleet_node).

    One executor, with a thread per node when there are several (each node's callbacks are mutually
    exclusive, so one node's slow callback holds up no other node); each lifecycle node with
    ``autostart`` is configured and activated; all are torn down at the end, the last built first.
    """
    stop = init(args)
    try:
        nodes = make_nodes()
    except build_errors as exc:
        print(f"{program}: error: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    except KeyboardInterrupt:  # asked twice while the nodes were being built
        rclpy.try_shutdown()
        return 0
    executor = SingleThreadedExecutor() if len(nodes) == 1 else \
        MultiThreadedExecutor(num_threads=len(nodes))
    for node in nodes:
        executor.add_node(node)
    try:
        for node in nodes:
            if isinstance(node, LifecycleNode) and node.get_parameter("autostart").value \
                    and not stop.requested:
                if node.trigger_configure() == TransitionCallbackReturn.SUCCESS \
                        and not stop.requested:
                    node.trigger_activate()
        spin(executor, stop)
    except (KeyboardInterrupt, ExternalShutdownException, SystemExit):
        pass
    finally:
        close(nodes, executor)
    return 0


def close(nodes: list[Node], executor: Executor) -> None:
    """Stop the executor, tear the nodes down (last built first), then shut rclpy down.

    The nodes are torn down while the context is still valid. A further signal cuts a node's wait
    for its worker threads short (its teardown still releases publishers and files) and the next
    node is closed.
    """
    try:
        executor.shutdown()
    except KeyboardInterrupt:
        pass
    for node in reversed(nodes):
        try:
            close_node(node)
        except KeyboardInterrupt:
            print(f"{node.get_name()}: teardown cut short (asked to stop again); worker threads "
                  "were not waited for", file=sys.stderr)
            node.destroy_node()
    rclpy.try_shutdown()


def close_node(node: Node) -> None:
    """Tear down a node of this package from any state: lifecycle shutdown, release devices."""
    if isinstance(node, LifecycleNode):
        node.on_shutdown(None)
    if hasattr(node, "close"):
        node.close()
    node.destroy_node()
