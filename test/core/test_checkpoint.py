"""Checkpoint resolution, integrity checks and the litgpt -> transformers mapping."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from audio_interaction_ros.core import checkpoint as ckpt
from audio_interaction_ros.core.model import AudioInteractionModel

CONFIG = {"n_layer": 1, "n_embd": 32, "n_head": 4, "n_query_groups": 2, "head_size": 8,
          "intermediate_size": 48, "padded_vocab_size": 64}


def interleave(grouped: torch.Tensor, n_head: int, n_groups: int, hs: int) -> torch.Tensor:
    """Inverse of regroup_legacy_qkv: the older litgpt per-group layout."""
    q_per_kv = n_head // n_groups
    q, k, v = grouped.split([n_head * hs, n_groups * hs, n_groups * hs])
    q = q.reshape(n_groups, q_per_kv * hs, *grouped.shape[1:])
    k = k.reshape(n_groups, hs, *grouped.shape[1:])
    v = v.reshape(n_groups, hs, *grouped.shape[1:])
    return torch.cat([q, k, v], dim=1).reshape(grouped.shape)


def litgpt_state(qkv_key: str = "qkv") -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    rows = (4 + 2 * 2) * 8
    state = {
        "transformer.wte.weight": torch.randn(64, 32),
        "transformer.ln_f.weight": torch.randn(32),
        "lm_head.weight": torch.randn(64, 32),
        "transformer.h.0.norm_1.weight": torch.randn(32),
        "transformer.h.0.norm_2.weight": torch.randn(32),
        f"transformer.h.0.attn.{qkv_key}.weight": torch.randn(rows, 32),
        f"transformer.h.0.attn.{qkv_key}.bias": torch.randn(rows),
        "transformer.h.0.attn.proj.weight": torch.randn(32, 32),
        "transformer.h.0.mlp.fc_1.weight": torch.randn(48, 32),
        "transformer.h.0.mlp.fc_2.weight": torch.randn(48, 32),
        "transformer.h.0.mlp.proj.weight": torch.randn(32, 48),
    }
    return state


def test_grouped_qkv_is_split_into_q_k_v():
    state = litgpt_state()
    hf = ckpt.litgpt_to_hf(state, CONFIG)
    qkv = state["transformer.h.0.attn.qkv.weight"]
    torch.testing.assert_close(hf["model.layers.0.self_attn.q_proj.weight"], qkv[:32])
    torch.testing.assert_close(hf["model.layers.0.self_attn.k_proj.weight"], qkv[32:48])
    torch.testing.assert_close(hf["model.layers.0.self_attn.v_proj.weight"], qkv[48:])
    torch.testing.assert_close(hf["model.layers.0.self_attn.v_proj.bias"],
                               state["transformer.h.0.attn.qkv.bias"][48:])
    assert hf["model.layers.0.mlp.gate_proj.weight"] is state["transformer.h.0.mlp.fc_1.weight"]
    assert hf["model.layers.0.mlp.up_proj.weight"] is state["transformer.h.0.mlp.fc_2.weight"]
    assert hf["model.embed_tokens.weight"] is state["transformer.wte.weight"]
    assert "lm_head.weight" in hf and len(hf) == 15  # 3 global + 2 norms + 6 qkv + o + 3 mlp


def test_legacy_interleaved_qkv_maps_to_the_same_tensors():
    grouped = litgpt_state()
    legacy = {k.replace("attn.qkv", "attn.attn"): v for k, v in grouped.items()}
    for kind in ("weight", "bias"):
        key = f"transformer.h.0.attn.attn.{kind}"
        legacy[key] = interleave(legacy[key], 4, 2, 8)
        assert not torch.equal(legacy[key], grouped[f"transformer.h.0.attn.qkv.{kind}"])
    a, b = ckpt.litgpt_to_hf(grouped, CONFIG), ckpt.litgpt_to_hf(legacy, CONFIG)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def test_unknown_and_misshaped_tensors_are_errors():
    state = litgpt_state()
    state["transformer.h.0.attn.rotary.weight"] = torch.zeros(1)
    with pytest.raises(ckpt.CheckpointError, match="unexpected LM tensors"):
        ckpt.litgpt_to_hf(state, CONFIG)
    state = litgpt_state()
    state["transformer.h.0.attn.qkv.weight"] = torch.zeros(40, 32)
    with pytest.raises(ckpt.CheckpointError, match="40 rows, expected 64"):
        ckpt.litgpt_to_hf(state, CONFIG)


@pytest.fixture()
def ckpt_copy(toy_model_dir, tmp_path):
    target = tmp_path / "ckpt"
    shutil.copytree(toy_model_dir, target)
    for path in target.rglob("*"):
        path.chmod(0o644 if path.is_file() else 0o755)
    return target


def test_checkpoint_verifies(toy_model_dir):
    files = ckpt.verify_checkpoint(toy_model_dir)
    assert [p.name for p in files.shards] == ["model-00001-of-00002.safetensors",
                                              "model-00002-of-00002.safetensors"]


def test_missing_shard(ckpt_copy):
    (ckpt_copy / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(ckpt.CheckpointError, match="lacks shard.*00002.*incomplete"):
        ckpt.verify_checkpoint(ckpt_copy)


def test_truncated_shard(ckpt_copy):
    shard = ckpt_copy / "model-00001-of-00002.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 1000])
    with pytest.raises(ckpt.CheckpointError, match="truncated or corrupted"):
        ckpt.verify_checkpoint(ckpt_copy)


def test_garbage_shard(ckpt_copy):
    (ckpt_copy / "model-00001-of-00002.safetensors").write_bytes(b"<html>rate limited</html>")
    with pytest.raises(ckpt.CheckpointError, match="not a valid safetensors"):
        ckpt.verify_checkpoint(ckpt_copy)


def test_total_size_mismatch(ckpt_copy):
    index_path = ckpt_copy / ckpt.INDEX_FILE
    index = json.loads(index_path.read_text())
    index["metadata"]["total_size"] += 2
    index_path.write_text(json.dumps(index))
    with pytest.raises(ckpt.CheckpointError, match="promises"):
        ckpt.verify_checkpoint(ckpt_copy)


@pytest.mark.parametrize("name", ["tokenizer.json", "model_config.yaml", ckpt.ENCODER_FILE,
                                  "qwen25OmniConfig/config.json", ckpt.INDEX_FILE])
def test_missing_file_named(ckpt_copy, name):
    (ckpt_copy / name).unlink()
    with pytest.raises(ckpt.CheckpointError, match=name.split("/")[-1].replace(".", r"\.")):
        ckpt.verify_checkpoint(ckpt_copy)


def test_wrong_shape_fails_loading(ckpt_copy):
    config_path = ckpt_copy / "model_config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["intermediate_size"] = 96
    config_path.write_text(yaml.safe_dump(config))
    with pytest.raises(ckpt.CheckpointError, match="do not fit"):
        AudioInteractionModel.load(ckpt_copy, device="cpu", dtype="float32")


def test_missing_lm_tensor_fails_loading(ckpt_copy):
    shard = ckpt_copy / "model-00001-of-00002.safetensors"
    state = load_file(str(shard))
    del state["transformer.h.1.norm_2.weight"]
    save_file(state, str(shard))
    index_path = ckpt_copy / ckpt.INDEX_FILE
    index = json.loads(index_path.read_text())
    del index["weight_map"]["transformer.h.1.norm_2.weight"]
    index["metadata"]["total_size"] -= 64 * 2
    index_path.write_text(json.dumps(index))
    with pytest.raises(ckpt.CheckpointError, match="missing_keys.*post_attention_layernorm"):
        AudioInteractionModel.load(ckpt_copy, device="cpu", dtype="float32")


class Payload:
    """Anything whose unpickling would run code."""

    def __reduce__(self):
        return (print, ("unpickled code ran",))


def test_encoder_file_is_never_unpickled_with_code(ckpt_copy, capsys):
    torch.save({"conv1.weight": Payload()}, ckpt_copy / ckpt.ENCODER_FILE)
    with pytest.raises(ckpt.CheckpointError, match="could not be loaded safely"):
        ckpt.load_encoder_state(ckpt.verify_checkpoint(ckpt_copy))
    assert "unpickled code ran" not in capsys.readouterr().out


def test_legacy_layout_checkpoint_loads_identically(ckpt_copy, toy_model):
    """A whole checkpoint re-saved with the legacy key gives the same LM weights."""
    shard = ckpt_copy / "model-00001-of-00002.safetensors"
    state = load_file(str(shard))
    index_path = ckpt_copy / ckpt.INDEX_FILE
    index = json.loads(index_path.read_text())
    for key in [k for k in state if ".attn.qkv." in k]:
        legacy = key.replace("attn.qkv", "attn.attn")
        state[legacy] = interleave(state.pop(key), 4, 2, 16).contiguous()
        index["weight_map"][legacy] = index["weight_map"].pop(key)
    save_file(state, str(shard))
    index_path.write_text(json.dumps(index))
    model = AudioInteractionModel.load(ckpt_copy, device="cpu", dtype="float32")
    ours, ref = model.lm.state_dict(), toy_model.lm.state_dict()
    for key in ref:
        torch.testing.assert_close(ours[key], ref[key])


def test_not_a_directory_nor_repo_id(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="neither a checkpoint directory"):
        ckpt.resolve_checkpoint(tmp_path / "nowhere")
    with pytest.raises(ckpt.CheckpointError, match="neither"):
        ckpt.resolve_checkpoint("not/a/repo/id")


def test_offline_repo_id_not_cached_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ckpt.CheckpointError, match="not in the Hugging Face cache.*hf download"):
        ckpt.resolve_checkpoint("zhifeixie/AudioInteraction", cache_dir=str(tmp_path),
                                local_files_only=True)


def test_repo_id_resolves_from_the_hub_cache(toy_model_dir, tmp_path):
    """A cached snapshot (huggingface_hub's layout) is found offline through the hub API."""
    repo = tmp_path / "models--someone--tiny"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(toy_model_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    found = ckpt.resolve_checkpoint("someone/tiny", cache_dir=str(tmp_path), local_files_only=True)
    assert found == snapshot
    ckpt.verify_checkpoint(found)


def test_cuda_requested_without_gpu_is_a_clear_error(toy_model_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="CUDA is not available"):
        AudioInteractionModel.load(toy_model_dir, device="cuda")


def test_out_of_gpu_memory_while_loading_is_a_clear_error(toy_model_dir, gpu_out_of_memory):
    """Moving the weights to a GPU that is too small: one RuntimeError that says what to do."""
    with pytest.raises(RuntimeError, match="out of GPU memory.*smaller dtype or device:=cpu"):
        AudioInteractionModel.load(toy_model_dir, device="cuda", dtype="float32")
