"""config/three_tasks.yaml: an assistant, a transcriber and a sound reporter on one model.

The file is checked against the parameter table, then layered over config/interaction.yaml as
``tasks:=three`` / ``--tasks three`` pass it: one node, three sessions with their own spoken
instructions, and a beep reaches each of ~/reply (+ ~/speech), ~/transcript and ~/sound_events.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import rclpy
import yaml
from hri_msgs.msg import LiveSpeech
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from audio_interaction_ros.ros import params
from audio_interaction_ros.ros.bringup import build_parser, ros_arguments
from audio_interaction_ros.ros.interaction_node import InteractionNode

from .conftest import spin_for, spin_until
from .test_interaction_node import RELIABLE, AudioTester, beep_clip

CONFIG = Path(__file__).resolve().parents[2] / "config"
OUTPUTS = {"reply": "assistant", "transcript": "transcriber", "sound_events": "sound_reporter"}


def three_tasks() -> dict:
    return yaml.safe_load((CONFIG / "three_tasks.yaml").read_text())[
        "/**/audio_interaction"]["ros__parameters"]


def test_three_tasks_file_names_known_valid_parameters():
    layer = three_tasks()
    sessions = layer.pop("sessions")
    assert set(layer) == set(sessions) == set(OUTPUTS.values())
    for name in sessions:
        for key, value in layer[name].items():
            spec = params.INTERACTION.lookup(f"{name}.{key}")
            assert spec is not None and spec in params.SESSION_PARAMS, key
            assert spec.check(value) is None, (name, key, value)
    assert {layer[s]["output"]: s for s in sessions} == OUTPUTS
    # each task is told what to do, in words like the trained prompts, as speech
    assert all(layer[s]["instruction"].strip() for s in sessions)
    assert all(layer[s].get("instruction_mode", "speech") == "speech" for s in sessions)


def test_bringup_layers_the_tasks_file_over_the_params_file():
    args = ros_arguments(build_parser().parse_args(["--tasks", "three"]))
    files = [args[i + 1] for i, a in enumerate(args) if a == "--params-file"]
    assert [Path(f).name for f in files] == ["interaction.yaml", "three_tasks.yaml"]
    assert all(Path(f).is_file() for f in files)
    one = ros_arguments(build_parser().parse_args([]))
    assert one.count("--params-file") == 1


@pytest.fixture()
def three_task_context():
    """A context whose global arguments are what bringup --tasks three passes."""
    context = rclpy.context.Context()
    rclpy.init(context=context, args=["bringup", *ros_arguments(
        build_parser().parse_args(["--tasks", "three"]))])
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)


def test_one_node_publishes_all_three_outputs(three_task_context, toy_model_dir):
    context = three_task_context
    node = InteractionNode(context=context, parameter_overrides=[
        Parameter("model", value=str(toy_model_dir)), Parameter("device", value="cpu"),
        Parameter("temperature", value=0.0), Parameter("autostart", value=False)])
    tester = AudioTester(context)
    finals: dict[str, list[str]] = {topic: [] for topic in OUTPUTS}
    for topic in OUTPUTS:
        tester.node.create_subscription(
            LiveSpeech, f"/audio_interaction/{topic}",
            lambda m, t=topic: m.final and finals[t].append(m.final), RELIABLE)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(tester.node)
    try:
        assert node.get_parameter("sessions").value == list(OUTPUTS.values())
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        engine = node.engine
        for name in OUTPUTS.values():
            text = three_tasks()[name]["instruction"]
            assert spin_until(executor, lambda n=name, t=text: engine.session(
                n).instruction_source == f"spoken {t!r}", 30), name
        tester.info(48000, 2)
        spin_for(executor, 0.3)
        tester.send(beep_clip())
        assert spin_until(executor, lambda: all("I hear a beep." in f for f in finals.values()),
                          30), finals
        # ~/speech carries the assistant's replies only
        assert spin_until(executor, lambda: tester.speech == finals["reply"], 5), \
            (tester.speech, finals)
    finally:
        node.on_shutdown(None)
        executor.shutdown()
        node.destroy_node()
        tester.node.destroy_node()
