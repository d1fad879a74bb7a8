"""One parameter table per lifecycle node (ros/params.py).

config/*.yaml is exactly what tools/write_config.py makes of it, and both nodes refuse a bad value,
given at start or set later, with the reason.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml
from rclpy.exceptions import InvalidParameterValueException
from rclpy.parameter import Parameter

from audio_interaction_ros.ros.interaction_node import InteractionNode
from audio_interaction_ros.ros.params import FLEET, INTERACTION, SPEECH
from audio_interaction_ros.ros.speech_node import SpeechNode

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {"interaction.yaml": ("/**/audio_interaction", INTERACTION),
           "speech.yaml": ("/**/speech", SPEECH),
           "fleet.yaml": ("/**/audio_interaction_fleet", FLEET)}


def _write_config():
    spec = importlib.util.spec_from_file_location("write_config", REPO / "tools" /
                                                  "write_config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("file_name", sorted(CONFIGS))
def test_config_file_is_generated_from_the_table(file_name):
    text = (REPO / "config" / file_name).read_text()
    assert text == _write_config().render(file_name), \
        f"config/{file_name} is stale: run python tools/write_config.py"


@pytest.mark.parametrize("file_name", sorted(CONFIGS))
def test_config_values_equal_declared_defaults(file_name):
    key, table = CONFIGS[file_name]
    params = yaml.safe_load((REPO / "config" / file_name).read_text())[key]["ros__parameters"]
    sessions = params.get("sessions", [])
    assert {k for k in params if k not in sessions} == {p.name for p in table.node}
    for p in table.node:
        assert params[p.name] == p.default and type(params[p.name]) is type(p.default), p.name
    for name in sessions:
        assert set(params[name]) == {p.name for p in table.per_session}
        for p in table.per_session:
            assert params[name][p.name] == p.default, p.name


def test_every_default_passes_its_own_check():
    for table in (INTERACTION, SPEECH, FLEET):
        for p in (*table.node, *table.per_session):
            assert p.check(p.default) is None, p.name


def test_lookup_finds_session_parameters_only_with_a_session_prefix():
    assert INTERACTION.lookup("assistant.output").name == "output"
    assert INTERACTION.lookup("output") is None
    assert INTERACTION.lookup("device").name == "device"
    assert SPEECH.lookup("assistant.output") is None


@pytest.mark.parametrize("make, name, value, reason", [
    (InteractionNode, "dtype", "int8", "dtype must be one of"),
    (InteractionNode, "device", "tpu", "device must be auto, cpu, cuda or cuda:N"),
    (InteractionNode, "assistant.output", "nowhere", "output must be one of"),
    (SpeechNode, "backend", "festival", "backend must be one of"),
    (SpeechNode, "input", "both", "input must be one of"),
])
def test_a_bad_start_value_is_refused_with_the_reason(ros_context, make, name, value, reason):
    """What a parameter file or ``-p`` gives is checked like a later set (the executable then
    prints the reason and exits 2, see runtime.run).
    """
    with pytest.raises(InvalidParameterValueException, match=reason):
        make(context=ros_context, parameter_overrides=[Parameter(name, value=value),
                                                       Parameter("autostart", value=False)])


def test_a_bad_set_is_refused_with_the_reason(ros_context):
    node = SpeechNode(context=ros_context,
                      parameter_overrides=[Parameter("autostart", value=False)])
    try:
        result = node.set_parameters([Parameter("backend", value="festival")])[0]
        assert not result.successful and "backend must be one of" in result.reason
        assert node.get_parameter("backend").value == "auto"
        assert node.set_parameters([Parameter("volume", value=0.5)])[0].successful
    finally:
        node.destroy_node()
