"""Qwen3's mixture of experts and configurations, against transformers' Qwen3-MoE and Qwen's published counts.

The whole models are proven equal to Qwen3ForCausalLM and Qwen3MoeForCausalLM through load_hf_model in
tests/test_hf_models.py; here the MoE layer alone is compared with transformers' own, the published
configurations are counted on the meta device, and bad configurations are refused.
"""

import pytest
import torch

from ch04_gpt.gpt import KVCache, count_parameters, generate_text_cached
from ch05_pretraining.pretraining import generate
from llama_qwen.qwen3 import (
    QWEN3_CONFIG_0_6B,
    QWEN3_CONFIG_30B_A3B,
    MoEFeedForward,
    Qwen3Model,
    count_active_parameters,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py

transformers = pytest.importorskip("transformers")  # listed in requirements: never skipped in CI

TINY = {
    **QWEN3_CONFIG_0_6B,
    "vocab_size": 200,
    "context_length": 64,
    "emb_dim": 32,
    "n_heads": 4,
    "head_dim": 16,
    "n_layers": 2,
    "hidden_dim": 64,
    "n_kv_groups": 2,
    "dtype": torch.float32,
}
TINY_MOE = {
    **TINY,
    "num_experts": 6,
    "num_experts_per_tok": 2,
    "moe_intermediate_size": 24,
    "norm_topk_prob": True,
}


def _hf_moe_block(norm_topk_prob, top_k):
    from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock

    config = transformers.Qwen3MoeConfig(
        hidden_size=32,
        moe_intermediate_size=24,
        num_experts=6,
        num_experts_per_tok=top_k,
        norm_topk_prob=norm_topk_prob,
    )
    block = Qwen3MoeSparseMoeBlock(config)
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(std=0.3)
    return block


def _copy_into(ours, hf_block):
    """transformers 5 keeps the experts fused: gate_up_proj (E, 2 * I, H) and down_proj (E, H, I)."""
    experts = hf_block.experts
    size = ours.experts[0].fc1.weight.shape[0]
    with torch.no_grad():
        ours.gate.weight.copy_(hf_block.gate.weight)
        for e, expert in enumerate(ours.experts):
            expert.fc1.weight.copy_(experts.gate_up_proj[e, :size])
            expert.fc2.weight.copy_(experts.gate_up_proj[e, size:])
            expert.fc3.weight.copy_(experts.down_proj[e])


@pytest.mark.parametrize(("norm_topk_prob", "top_k"), [(True, 2), (False, 2), (True, 3)])
def test_moe_layer_equals_transformers_qwen3_moe_block(norm_topk_prob, top_k):
    torch.manual_seed(0)
    hf_block = _hf_moe_block(norm_topk_prob, top_k)
    ours = MoEFeedForward({**TINY_MOE, "num_experts_per_tok": top_k, "norm_topk_prob": norm_topk_prob})
    _copy_into(ours, hf_block)
    x = torch.randn(2, 9, 32)
    with torch.no_grad():
        diff = (ours(x) - hf_block(x)).abs().max().item()
        weights, experts = ours.route(x)
    print(f"norm_topk_prob={norm_topk_prob}, top_k={top_k}: max abs difference {diff:.1e}")
    assert diff < 1e-5
    assert experts.shape == (2, 9, top_k) and len(experts.unique()) > top_k  # tokens go to different experts
    sums = weights.sum(dim=-1)
    assert torch.allclose(sums, torch.ones_like(sums)) if norm_topk_prob else bool((sums < 1).all())


def test_published_sizes_counted_on_the_meta_device():
    with torch.device("meta"):
        dense, moe = Qwen3Model(QWEN3_CONFIG_0_6B), Qwen3Model(QWEN3_CONFIG_30B_A3B)
    assert count_parameters(dense) == count_active_parameters(dense) == 596_049_920  # "0.6B"
    assert (
        count_parameters(dense) - dense.tok_emb.weight.numel() == 440_467_456
    )  # Qwen's "0.44B non-embedding"
    assert dense.out_head.weight is dense.tok_emb.weight
    assert count_parameters(moe) == 30_532_122_624  # "30.5B"
    assert count_active_parameters(moe) == 3_353_032_704  # "3.3B activated"
    assert moe.out_head.weight is not moe.tok_emb.weight
    assert dense.trf_blocks[0].att.W_query.weight.shape == (2048, 1024)  # 16 heads x head_dim 128
    assert all(len(block.ff.experts) == 128 for block in moe.trf_blocks)


def test_moe_model_generates_the_same_with_and_without_the_cache():
    torch.manual_seed(1)
    model = Qwen3Model(TINY_MOE).eval()
    with torch.no_grad():
        for block in model.trf_blocks:
            block.ff.gate.weight.normal_(std=1.0)
    prompt = torch.tensor([[3, 14, 15, 92, 65], [35, 89, 79, 32, 38]])
    plain = generate(model, prompt, max_new_tokens=12, context_size=TINY_MOE["context_length"])
    cached = generate_text_cached(model, prompt, max_new_tokens=12, context_size=TINY_MOE["context_length"])
    assert torch.equal(plain, cached)
    cache = KVCache(len(model.trf_blocks))
    with torch.no_grad():
        model(prompt, kv_cache=cache)
    assert cache.layers[0].keys.shape == (2, TINY_MOE["n_kv_groups"], 5, TINY_MOE["head_dim"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_experts_per_tok": 7}, r"num_experts_per_tok \(7\) is more than num_experts \(6\)"),
        ({"moe_intermediate_size": 0}, "moe_intermediate_size must be a positive integer"),
        ({"moe_intermediate_size": None}, "moe_intermediate_size must be a positive integer"),
    ],
)
def test_bad_expert_settings_are_refused_before_anything_is_built(change, message):
    with pytest.raises(ValueError, match=message):
        Qwen3Model({**TINY_MOE, **change})
    missing = {k: v for k, v in TINY_MOE.items() if k != "moe_intermediate_size"}
    with pytest.raises(ValueError, match=r"lacks \['moe_intermediate_size'\]"):
        Qwen3Model(missing)
