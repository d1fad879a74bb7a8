"""config/interaction.yaml documents exactly the parameters the node declares."""
from __future__ import annotations

from pathlib import Path

import yaml

from audio_interaction_ros.ros.params import NODE_PARAMS, SESSION_PARAMS

CONFIG = Path(__file__).resolve().parents[2] / "config" / "interaction.yaml"


def test_config_keys_equal_declared_parameters():
    params = yaml.safe_load(CONFIG.read_text())["/**/audio_interaction"]["ros__parameters"]
    sessions = params["sessions"]
    assert sessions == ["assistant"]
    node_keys = {k for k in params if k not in sessions}
    assert node_keys == {p.name for p in NODE_PARAMS}
    for name in sessions:
        assert set(params[name]) == {p.name for p in SESSION_PARAMS}


def test_config_defaults_equal_declared_defaults():
    params = yaml.safe_load(CONFIG.read_text())["/**/audio_interaction"]["ros__parameters"]
    for p in NODE_PARAMS:
        assert params[p.name] == p.default, p.name
        assert type(params[p.name]) is type(p.default), p.name
    for p in SESSION_PARAMS:
        assert params["assistant"][p.name] == p.default, p.name


def test_every_default_passes_its_own_check():
    for p in (*NODE_PARAMS, *SESSION_PARAMS):
        assert p.check(p.default) is None, p.name
