"""The command-line runner: golden tokens from the command line, one clear line on bad input."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from audio_interaction_ros.core.protocol import TEXT_BEGIN

from ..conftest import child_env



def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = child_env(HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "audio_interaction_ros.runner", *args],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("case", ["multi_beep_speech", "mixed"])
def test_runner_reproduces_golden_turns(case, fixture_dir):
    result = json.loads((fixture_dir / "golden" / case / "result.json").read_text())
    files = [str(fixture_dir / "golden/inputs" / p.rsplit("/", 1)[-1]) for p in result["inputs"]]
    proc = run_cli("--model", str(fixture_dir / "ckpt"), "--device", "cpu", "--dtype", "float32",
                   "--frontend", "reference", "--rope-positions", "reference", *files)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    chunks = [line for line in lines if "tokens" in line]
    assert [line["tokens"] for line in chunks] == result["turns"]
    golden_steps = [(r["step"], r["chunk"]) for r in result["per_chunk"]]
    names = [s["name"] for s in result["steps"]]
    ours = [(names[2 * line["step"] + (line["segment"] == "trailing_silence")], line["chunk"])
            for line in chunks]
    assert ours == golden_steps
    replies = [line for line in lines if "text" in line]
    assert [(r["text"], r["emotion"]) for r in replies] == \
        [(r["text"], r["emotion"]) for r in result["replies"]]
    assert all(r["latency_ms"] > 0 for r in replies)
    for line in chunks:
        assert (line["decision"] == "speak") == (line["tokens"][0] == TEXT_BEGIN)
        assert 0.0 <= line["p_speak"] <= 1.0


def test_runner_streaming_frontend_any_rate(toy_model_dir, stereo_48k_wav):
    """A 48 kHz stereo recording is converted; streaming mode runs end to end."""
    proc = run_cli("--model", str(toy_model_dir), "--device", "cpu", "--frontend",
                   "streaming", "--trailing-silence", "0", str(stereo_48k_wav))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len([line for line in lines if "tokens" in line]) >= 5


def bad_checkpoint(model_dir, tmp_path, breaker):
    target = tmp_path / "ckpt"
    shutil.copytree(model_dir, target)
    for path in target.rglob("*"):
        path.chmod(0o644 if path.is_file() else 0o755)
    breaker(target)
    return target


def _drop_shard(ckpt):
    (ckpt / "model-00002-of-00002.safetensors").unlink()


def _wrong_shape(ckpt):
    cfg = ckpt / "model_config.yaml"
    cfg.write_text(cfg.read_text().replace("intermediate_size: 128", "intermediate_size: 96"))


@pytest.mark.parametrize("make_args, message", [
    pytest.param(lambda f, a, t: ["--model", str(f), str(t / "absent.wav")],
                 "does not exist", id="missing-file"),
    pytest.param(lambda f, a, t: ["--model", str(f), str(f / "tokenizer.json")],
                 "could not be decoded", id="unreadable-audio"),
    pytest.param(lambda f, a, t: ["--model", str(bad_checkpoint(f, t, _drop_shard)), str(a)],
                 "lacks shard", id="missing-shard"),
    pytest.param(lambda f, a, t: ["--model", str(bad_checkpoint(f, t, _wrong_shape)), str(a)],
                 "do not fit", id="wrong-shape"),
    pytest.param(lambda f, a, t: ["--model", str(t / "no-such-dir"), str(a)],
                 "neither a checkpoint directory", id="missing-checkpoint"),
    pytest.param(lambda f, a, t: ["--model", str(f), "--device", "cuda:7", str(a)],
                 "cuda:7", id="absent-cuda"),
])
def test_bad_input_gives_one_clear_error_line(make_args, message, toy_model_dir, beep_wav,
                                              tmp_path):
    proc = run_cli(*make_args(toy_model_dir, beep_wav, tmp_path))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("audio-interaction-run: error:") and message in lines[0]
    assert proc.stdout == ""
