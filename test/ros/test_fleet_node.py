"""fleet_node in-process: each robot's node has exactly the interface of an interaction_node in
its namespace, the model is loaded once and freed by the last robot, and each robot keeps its own
lifecycle (one robot down, or failing to configure, leaves the other answering)."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from audio_interaction_ros.ros.fleet_node import FleetNode, robot_namespaces
from audio_interaction_ros.ros.interaction_node import InteractionNode

from ..conftest import toy_checkpoint
from .conftest import spin_for, spin_until
from .test_interaction_node import AudioTester, beep_clip

SUCCESS = TransitionCallbackReturn.SUCCESS


def test_robot_names_become_absolute_namespaces():
    assert robot_namespaces(["robot1", "/robot2", "lab/robot3/"]) == [
        "/robot1", "/robot2", "/lab/robot3"]
    for bad, reason in (([], "empty"), (["robot 1"], "not a valid namespace"),
                        (["1robot"], "not a valid namespace"), (["r", "/r"], "named twice")):
        with pytest.raises(ValueError, match=reason):
            robot_namespaces(bad)


@contextlib.contextmanager
def fleet(*ros_args: str, robots: str = "[robot1, robot2]"):
    """A fleet in its own context, built from global arguments as fleet_node's command line
    gives them (they reach every node of the process), spun by one executor; torn down after."""
    context = rclpy.context.Context()
    rclpy.init(context=context, args=[
        "fleet_node", "--ros-args", "-p", f"robots:={robots}", "-p", f"model:={toy_checkpoint()}",
        "-p", "device:=cpu", "-p", "temperature:=0.0", "-p", "autostart:=false",
        "-p", "diagnostics_period_s:=0.2", *ros_args])
    nodes = []
    executor = MultiThreadedExecutor(num_threads=3, context=context)
    try:
        fleet_node = FleetNode(context=context)
        nodes = fleet_node.nodes
        for node in nodes:
            executor.add_node(node)
        yield fleet_node, executor
    finally:
        for node in reversed(nodes):
            if isinstance(node, InteractionNode):
                node.on_shutdown(None)
            node.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown(context=context)


def interface(node, namespace: str) -> dict[str, set]:
    """Topics, services and parameters of ``node`` with its namespace cut off."""
    def local(name: str) -> str:
        return name.removeprefix(namespace) if name.startswith(namespace + "/") else name

    return {"publishers": {local(node.resolve_topic_name(p.topic_name)) for p in node.publishers},
            "subscriptions": {local(node.resolve_topic_name(s.topic_name))
                              for s in node.subscriptions},
            "services": {local(node.resolve_service_name(s.srv_name)) for s in node.services},
            "parameters": set(node._parameters)}


def activate(*nodes) -> None:
    for node in nodes:
        assert node.trigger_configure() == SUCCESS
        assert node.trigger_activate() == SUCCESS


def test_each_robot_is_an_interaction_node_in_its_namespace():
    with fleet("-p", "sessions:=[assistant, scribe]") as (fleet_node, executor):
        robot1, robot2 = fleet_node.robots
        assert [r.get_fully_qualified_name() for r in fleet_node.robots] == [
            "/robot1/audio_interaction", "/robot2/audio_interaction"]
        single = InteractionNode(namespace="/single", context=fleet_node.context)
        try:
            activate(single, robot1, robot2)
            expected = interface(single, "/single")
            assert "/audio_interaction/speech" in expected["publishers"]
            assert "/audio" in expected["subscriptions"]
            assert "/audio_interaction/scribe/reset" in expected["services"]
            assert interface(robot1, "/robot1") == expected
            assert interface(robot2, "/robot2") == expected
        finally:
            single.on_shutdown(None)
            single.destroy_node()


def test_the_model_is_loaded_once_and_freed_by_the_last_robot():
    with fleet() as (fleet_node, executor):
        robot1, robot2 = fleet_node.robots
        models = fleet_node.models
        activate(robot1, robot2)
        assert models.loads == 1
        (engine,) = models.engines  # each robot is a stream of the one engine
        assert engine.stream_names == ["/robot1/audio_interaction", "/robot2/audio_interaction"]
        assert robot1.engine.model is robot2.engine.model is engine.model
        assert robot1.trigger_deactivate() == SUCCESS
        assert robot1.trigger_cleanup() == SUCCESS
        assert models.users(engine) == 1 and engine.stream_names == ["/robot2/audio_interaction"]
        activate(robot1)  # attaches again, no second load
        assert models.loads == 1 and robot1.engine.model is engine.model
        for robot in (robot1, robot2):
            assert robot.trigger_deactivate() == SUCCESS
            assert robot.trigger_cleanup() == SUCCESS
        assert models.engines == [] and engine.stream_names == []
        activate(robot2)  # nothing held it: loaded afresh
        assert models.loads == 2 and robot2.engine.model is not engine.model


def test_all_robots_due_chunks_share_one_forward():
    """Both robots have 4 s of audio due at once: 10 ticks, each ONE forward with a row of each
    robot, instead of 20 forwards one after another."""
    with fleet() as (fleet_node, executor):
        robot1, robot2 = fleet_node.robots
        activate(robot1, robot2)
        (engine,) = fleet_node.models.engines
        streams = [robot1.engine, robot2.engine]
        for stream in streams:
            stream.pause()
            stream.push(np.zeros(10 * 6400, np.float32))
        before = engine.batch_stats().forwards
        with engine._lock:  # both due from the same tick on (the engine thread waits)
            for stream in streams:
                stream.resume()
        assert spin_until(executor, lambda: all(s.stats().chunks == 10 for s in streams))
        batch = engine.batch_stats()
        assert batch.forwards - before == 10 and batch.rows_max == 2


def answers(tester: AudioTester, executor) -> bool:
    before = len(tester.speech)
    tester.send(beep_clip())
    return spin_until(executor, lambda: len(tester.speech) > before, 20)


def test_one_robot_down_or_broken_leaves_the_other_answering():
    with fleet() as (fleet_node, executor):
        robot1, robot2 = fleet_node.robots
        # robot2 asks for a model that does not exist: its configure fails, robot1's does not
        robot2.set_parameters([Parameter("model", value="/nonexistent/model")])
        testers = [AudioTester(fleet_node.context, ns) for ns in ("/robot1", "/robot2")]
        for tester in testers:
            executor.add_node(tester.node)
        try:
            assert robot2.trigger_configure() != SUCCESS
            activate(robot1)
            assert fleet_node.models.loads == 1
            for tester in testers:
                tester.info(48000, 2)
            spin_for(executor, 0.3)
            assert answers(testers[0], executor)
            assert not testers[1].speech
            assert spin_until(executor, lambda: testers[1].diagnostics and "no model loaded"
                              in testers[1].diagnostics[-1].message)
            assert robot1.trigger_deactivate() == SUCCESS  # robot1 down, robot2 up
            robot2.set_parameters([Parameter("model", value=str(toy_checkpoint()))])
            activate(robot2)
            assert fleet_node.models.loads == 1  # robot1 (inactive) still holds the model
            spin_for(executor, 0.3)
            assert answers(testers[1], executor)
            assert testers[0].speech == ["I hear a beep."]
        finally:
            for tester in testers:
                tester.node.destroy_node()
