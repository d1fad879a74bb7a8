"""Weight-only quantization at load, the tensor-by-tensor loader, and dtype:=auto on a CPU."""
from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from audio_interaction_ros.core import checkpoint as ckpt
from audio_interaction_ros.core import model as model_module
from audio_interaction_ros.core import quantization as quant
from audio_interaction_ros.core.audio import read_audio_file
from audio_interaction_ros.core.events import Decision
from audio_interaction_ros.core.features import StreamingFrontEnd
from audio_interaction_ros.core.model import AudioInteractionModel, cpu_bf16_feature, resolve_dtype
from audio_interaction_ros.core.protocol import CHUNK_SAMPLES
from audio_interaction_ros.core.sampling import SamplingConfig
from audio_interaction_ros.core.session import ListenSession, SessionConfig
from audio_interaction_ros.toy.check import beep_clip

CPU = torch.device("cpu")


def decisions(model, samples: np.ndarray) -> list[tuple[bool, float]]:
    """(speak, p_speak) of every chunk of one greedy streaming session."""
    session = ListenSession(model, SessionConfig(sampling=SamplingConfig(temperature=0.0),
                                                 max_reply_tokens=32))
    frontend = StreamingFrontEnd()
    samples = np.concatenate([samples, np.zeros(-len(samples) % CHUNK_SAMPLES, np.float32)])
    out = []
    for chunk in samples.reshape(-1, CHUNK_SAMPLES):
        out += [(e.speak, e.p_speak) for e in session.listen(model.encode(frontend.push(chunk))[0])
                if isinstance(e, Decision)]
    return out


def log_odds(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


@pytest.fixture(scope="module")
def clip(speech_wav) -> np.ndarray:
    """A beep, a spoken sentence, a beep: what the trained models answer, between silences."""
    return np.concatenate([beep_clip(), read_audio_file(speech_wav), beep_clip()])


@pytest.mark.parametrize("scheme, max_log_odds", [("int8", 0.25), ("int4", 1.0)])
def test_quantized_model_loads_and_decides_like_the_unquantized(trained_checkpoint, trained_model,
                                                                clip, scheme, max_log_odds):
    model = AudioInteractionModel.load(trained_checkpoint, device="cpu", dtype="float32",
                                       quantization=scheme)
    assert model.info.quantization == scheme
    assert scheme in model.info.quantized_layers and "dense" not in model.info.quantized_layers
    assert not any(isinstance(m, torch.nn.Linear) for m in model.lm.modules())
    ref, got = decisions(trained_model, clip), decisions(model, clip)
    assert [s for s, _ in got] == [s for s, _ in ref]
    assert any(s for s, _ in ref) and not all(s for s, _ in ref)  # both kinds were decided
    worst = max(abs(log_odds(p) - log_odds(q)) for (_, p), (_, q) in zip(ref, got))
    assert worst < max_log_odds


def test_weight_bytes_are_reported_and_shrink(trained_checkpoint, trained_model):
    sizes = {scheme: AudioInteractionModel.load(trained_checkpoint, device="cpu",
                                                dtype="float32", quantization=scheme).info
             for scheme in ("int8", "int4")}
    dense = trained_model.info
    assert dense.quantization == "none" and dense.quantized_layers == "28 dense"
    assert dense.weight_bytes == quant.tensor_bytes(trained_model.lm, trained_model.encoder)
    # the 151936 x 64 float32 embedding stays: it dominates the fixture's bytes
    assert sizes["int4"].weight_bytes <= sizes["int8"].weight_bytes < dense.weight_bytes - 25e6
    assert "1 kept int8: LM head" in sizes["int4"].quantized_layers


def test_int4_keeps_the_layers_its_kernel_cannot_take_in_int8():
    report = quant.QuantizationReport("int4")
    made = {shape: quant.quantize_linear(torch.nn.Linear(*shape), "int4", CPU, report)
            for shape in ((256, 64), (64, 40), (48, 64))}
    assert isinstance(made[(256, 64)], quant.Int4Linear) and made[(256, 64)].group_size == 128
    assert isinstance(made[(64, 40)], quant.Int8Linear)  # 40 outputs: not a multiple of 16
    assert isinstance(made[(48, 64)], quant.Int8Linear)  # 48 inputs: no group size divides it
    assert report.kept_int8 == {"output features not a multiple of 16": 1,
                                "input features not a multiple of 32": 1}
    assert quant.int4_group_size(64, 64, CPU) == 64


@pytest.mark.parametrize("scheme, tolerance", [("int8", 0.01), ("int4", 0.12)])
def test_quantized_linear_matches_dense_for_any_leading_shape(scheme, tolerance):
    torch.manual_seed(0)
    dense = torch.nn.Linear(256, 128).to(torch.bfloat16)
    layer = quant.quantize_linear(dense, scheme, CPU, quant.QuantizationReport(scheme))
    for shape in ((1, 256), (13, 256), (2, 13, 256)):
        x = torch.randn(shape, dtype=torch.bfloat16)
        want, got = dense(x).float(), layer(x).float()
        assert got.shape == want.shape
        assert (got - want).norm() / want.norm() < tolerance


def test_linear_rows_are_the_dense_rows_of_plain_and_int8_layers():
    dense = torch.nn.Linear(64, 32)
    rows = [3, 17]
    torch.testing.assert_close(quant.linear_rows(dense, rows), dense.weight[rows])
    int8 = quant.quantize_linear(dense, "int8", CPU, quant.QuantizationReport("int8"))
    torch.testing.assert_close(quant.linear_rows(int8, rows), dense.weight[rows].detach(),
                               atol=dense.weight.abs().max().item() / 127, rtol=0)
    with pytest.raises(TypeError):
        quant.linear_rows(torch.nn.Conv1d(4, 4, 3), rows)


def test_unknown_quantization_is_a_clear_error(toy_model_dir):
    with pytest.raises(ValueError, match="'int3' is not one of none, int8, int4"):
        AudioInteractionModel.load(toy_model_dir, device="cpu", quantization="int3")


def test_int4_on_a_gpu_without_the_kernel_names_what_works(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    with pytest.raises(ValueError, match=r"compute capability 8\.0.*7\.5.*int8 or none"):
        quant.check_supported("int4", torch.device("cuda"), torch.bfloat16)
    quant.check_supported("int8", torch.device("cuda"), torch.float16)  # int8 runs there
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 7))
    with pytest.raises(ValueError, match="bfloat16 only, not float16.*dtype:=bfloat16"):
        quant.check_supported("int4", torch.device("cuda"), torch.float16)
    quant.check_supported("int4", torch.device("cuda"), torch.bfloat16)  # e.g. a Jetson Orin


def test_quantization_without_torchao_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao", None)
    monkeypatch.delitem(sys.modules, "torchao.quantization", raising=False)
    monkeypatch.delitem(sys.modules, "torchao.quantization.utils", raising=False)
    with pytest.raises(ValueError, match="needs torchao.*pip install torchao==.*none works"):
        quant.check_supported("int8", CPU, torch.float32)
    quant.check_supported("none", CPU, torch.float32)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_tensor_by_tensor_loader_equals_transformers_from_pretrained(trained_checkpoint, dtype):
    """Same parameters and buffers (values and dtypes) as transformers' own loading."""
    from transformers import AutoConfig, Qwen2ForCausalLM
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import Qwen2_5OmniAudioEncoder

    torch_dtype = getattr(torch, dtype)
    files = ckpt.verify_checkpoint(trained_checkpoint)
    litgpt = ckpt.read_litgpt_config(files.lm_config)
    ours = AudioInteractionModel.load(trained_checkpoint, device="cpu", dtype=dtype)
    lm = Qwen2ForCausalLM.from_pretrained(
        None, config=ckpt.qwen2_config(litgpt), dtype=torch_dtype,
        state_dict=dict(ckpt.iter_lm_tensors(files, litgpt)))
    encoder = Qwen2_5OmniAudioEncoder.from_pretrained(
        None, config=AutoConfig.from_pretrained(files.omni_config).thinker_config.audio_config,
        state_dict=ckpt.load_encoder_state(files), dtype=torch_dtype)
    for mine, theirs in ((ours.lm, lm), (ours.encoder, encoder)):
        a = {**dict(mine.named_parameters()), **dict(mine.named_buffers())}
        b = {**dict(theirs.named_parameters()), **dict(theirs.named_buffers())}
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].dtype == b[key].dtype, key
            assert torch.equal(a[key], b[key]), key
    # the LM attends through the batched rows' kernel (core/rows.py); the encoder as transformers
    assert ours.lm.config._attn_implementation == "audio_interaction_rows"
    assert ours.encoder.config._attn_implementation == encoder.config._attn_implementation


@pytest.mark.parametrize("cpuinfo, feature", [
    ("flags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n", "avx512_bf16"),
    ("flags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n", "amx_bf16"),
    ("Features\t: fp asimd evtstrm aes sha2 bf16 i8mm\n", "bf16"),  # ARM (Graviton 3, Orin: no)
    ("flags\t\t: fpu sse avx2 fma\n", None),
    ("Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics\n", None),  # Cortex-A78AE
])
def test_cpu_bf16_feature_is_read_from_cpuinfo(cpuinfo, feature):
    assert cpu_bf16_feature(cpuinfo) == feature


@pytest.mark.parametrize("feature, expected", [("avx512_bf16", torch.bfloat16),
                                               ("bf16", torch.bfloat16), (None, torch.float32)])
def test_auto_dtype_on_cpu_follows_native_bf16(monkeypatch, feature, expected):
    monkeypatch.setattr(model_module, "cpu_bf16_feature", lambda cpuinfo=None: feature)
    assert resolve_dtype("auto", CPU) == expected
    reason = model_module.dtype_reason("auto", CPU, expected)
    assert (feature or "no native bf16") in reason
    assert resolve_dtype("float32", CPU) == torch.float32  # parity tests ask for it explicitly


def test_auto_dtype_is_reported_by_the_loaded_model(toy_model_dir, monkeypatch):
    monkeypatch.setattr(model_module, "cpu_bf16_feature", lambda cpuinfo=None: None)
    model = AudioInteractionModel.load(toy_model_dir, device="cpu")
    assert model.info.dtype == "float32" and model.info.dtype_reason == \
        "auto: CPU has no native bf16"
