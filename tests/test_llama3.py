"""Llama3Model and its parts against Hugging Face's LlamaForCausalLM, built with small random configurations.

No weights are downloaded: transformers draws a random LlamaForCausalLM (grouped-query attention with fewer
key/value heads than query heads, Llama 3's RoPE scaling with an original context of 16 tokens, so that a
48-token input reaches the scaled frequencies), the weights are copied into Llama3Model, and the logits
must agree in float32 within 1e-4, with the KV cache and without; chapter 5's greedy ``generate`` must
choose the tokens of an argmax loop over the reference model. The course's loader (``load_hf_model``, of
the folder ``save_pretrained`` writes) must build the same model.
"""

import pytest
import torch

pytest.importorskip("transformers")
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402
from transformers.models.llama.modeling_llama import (  # noqa: E402
    LlamaRMSNorm,
    LlamaRotaryEmbedding,
    apply_rotary_pos_emb,
)

from ch03_attention.attention import MultiHeadAttention  # noqa: E402
from ch04_gpt.gpt import KVCache, generate_text_cached, next_token_logits  # noqa: E402
from ch05_pretraining.fast_generation import StaticKVCache  # noqa: E402
from ch05_pretraining.pretraining import generate  # noqa: E402
from llama_qwen.hf_models import load_hf_model  # noqa: E402
from llama_qwen.llama3 import (  # noqa: E402
    LLAMA32_CONFIG_1B,
    LLAMA32_CONFIG_3B,
    GroupedQueryAttention,
    Llama3Model,
    RMSNorm,
    apply_rope,
    compute_rope_params,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py

TOL = 1e-4
SEQ_LEN = 48  # > 16 = original_max_position_embeddings: the scaled frequencies matter
ROPE_FREQ = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_context_length": 16}


def _hf_config(tied):
    return LlamaConfig(
        vocab_size=97,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,  # 4 query heads per key/value head
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        rope_theta=500_000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
        },
        tie_word_embeddings=tied,
        attention_bias=False,
        mlp_bias=False,
    )


def _our_config(tied, rope_freq=ROPE_FREQ):
    return {
        "vocab_size": 97,
        "context_length": 64,
        "emb_dim": 64,
        "n_heads": 8,
        "n_layers": 2,
        "hidden_dim": 96,
        "n_kv_groups": 2,
        "rope_base": 500_000.0,
        "rope_freq": rope_freq,
        "dtype": None,
        "tie_word_embeddings": tied,
    }


_LAYER_NAMES = {
    "self_attn.q_proj": "att.W_query",
    "self_attn.k_proj": "att.W_key",
    "self_attn.v_proj": "att.W_value",
    "self_attn.o_proj": "att.out_proj",
    "mlp.gate_proj": "ff.fc1",
    "mlp.up_proj": "ff.fc2",
    "mlp.down_proj": "ff.fc3",
    "input_layernorm": "norm1",
    "post_attention_layernorm": "norm2",
}


def _copy_hf_weights(hf, model):
    """Hugging Face's Llama tensor names -> Llama3Model's (the layout needs no transposes or permutations)."""
    sd = hf.state_dict()
    new = {
        "tok_emb.weight": sd["model.embed_tokens.weight"],
        "final_norm.weight": sd["model.norm.weight"],
        "out_head.weight": sd.get("lm_head.weight", sd["model.embed_tokens.weight"]),
    }
    for i in range(len(model.trf_blocks)):
        for theirs, ours in _LAYER_NAMES.items():
            new[f"trf_blocks.{i}.{ours}.weight"] = sd[f"model.layers.{i}.{theirs}.weight"]
    model.load_state_dict(new, strict=True)
    return model


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def pair(request):
    tied = request.param
    torch.manual_seed(123)
    hf = LlamaForCausalLM(_hf_config(tied)).eval()
    model = _copy_hf_weights(hf, Llama3Model(_our_config(tied))).eval()
    assert (model.out_head.weight is model.tok_emb.weight) == tied
    ids = torch.randint(0, 97, (2, SEQ_LEN), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = hf(ids).logits
    return hf, model, ids, reference


def test_logits_equal_to_hugging_face(pair):
    _, model, ids, reference = pair
    with torch.no_grad():
        logits = model(ids)
    diff = (logits - reference).abs().max().item()
    print(f"max abs difference, batch of 2 x {SEQ_LEN} tokens: {diff:.1e}")
    assert logits.shape == reference.shape == (2, SEQ_LEN, 97)
    assert diff < TOL


def test_the_course_loader_builds_the_same_model(pair, tmp_path):
    hf, _, ids, reference = pair  # the mapping above, against the course's loader of save_pretrained folders
    hf.save_pretrained(tmp_path)
    loaded = load_hf_model(tmp_path)
    assert type(loaded) is Llama3Model
    assert (loaded.out_head.weight is loaded.tok_emb.weight) == hf.config.tie_word_embeddings
    with torch.no_grad():
        assert (loaded(ids) - reference).abs().max().item() < TOL


def test_rope_scaling_matters_at_this_length(pair):
    hf, _, ids, reference = pair
    plain = _copy_hf_weights(hf, Llama3Model(_our_config(hf.config.tie_word_embeddings, rope_freq=None)))
    with torch.no_grad():
        diff = (plain.eval()(ids) - reference).abs().max().item()
    assert diff > 1e-3, "without Llama 3's scaling the logits must differ, or the comparison proves nothing"


def test_kv_cache_gives_the_same_logits(pair):
    _, model, ids, reference = pair
    cache = KVCache(len(model.trf_blocks))
    with torch.no_grad():
        parts = [model(ids[:, a:b], kv_cache=cache) for a, b in ((0, 30), (30, 40), (40, 41))]
    # (batch, n_kv_groups, tokens, head_dim): the cache holds 2 key/value heads, not 8
    assert cache.layers[0].keys.shape == (2, 2, 41, 8)
    diff = (torch.cat(parts, dim=1) - reference[:, :41]).abs().max().item()
    print(f"max abs difference with the KV cache: {diff:.1e}")
    assert diff < TOL

    cache = KVCache(len(model.trf_blocks))  # chapter 4's step function, token by token
    for end in range(36, SEQ_LEN + 1):
        step = next_token_logits(model, ids[:, :end], 64, cache)
        assert (step - reference[:, end - 1]).abs().max().item() < TOL

    static = StaticKVCache(len(model.trf_blocks), max_tokens=64)  # chapter 5's preallocated cache
    with torch.no_grad():
        first, rest = model(ids[:, :40], kv_cache=static), model(ids[:, 40:], kv_cache=static)
    assert (torch.cat([first, rest], 1) - reference).abs().max().item() < TOL


def test_greedy_generation_matches_an_argmax_loop(pair):
    hf, model, ids, _ = pair
    prompt, new = ids[:, :34], 12  # the generated text runs past position 40
    expected = prompt
    with torch.no_grad():
        for _ in range(new):
            expected = torch.cat([expected, hf(expected).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(generate(model, prompt, new, context_size=64), expected)  # chapter 5
    assert torch.equal(generate_text_cached(model, prompt, new, context_size=64), expected)  # chapter 4


def test_rmsnorm_equals_torch_and_hugging_face():
    torch.manual_seed(0)
    x = 3 * torch.randn(2, 5, 32) + 1
    ours, theirs, hf = RMSNorm(32), torch.nn.RMSNorm(32, eps=1e-5), LlamaRMSNorm(32, eps=1e-5)
    with torch.no_grad():
        for norm in (ours, theirs, hf):
            norm.weight.copy_(torch.linspace(0.5, 1.5, 32))
        assert (ours(x) - theirs(x)).abs().max() < 1e-6
        assert (ours(x) - hf(x)).abs().max() < 1e-6
        y = x.to(torch.bfloat16)  # float32 inside, then back to bfloat16, as Hugging Face does
        ours_bf16, hf_bf16 = ours.to(torch.bfloat16)(y), hf.to(torch.bfloat16)(y)
    assert ours_bf16.dtype == torch.bfloat16 and torch.equal(ours_bf16, hf_bf16)


def test_rope_equals_hugging_face_rotary_embedding():
    config = _hf_config(tied=True)
    rotary = LlamaRotaryEmbedding(config)
    positions = torch.arange(SEQ_LEN)[None]
    q, k = torch.randn(2, 8, SEQ_LEN, 8), torch.randn(2, 2, SEQ_LEN, 8)
    cos_hf, sin_hf = rotary(q, positions)
    q_hf, k_hf = apply_rotary_pos_emb(q, k, cos_hf, sin_hf)
    cos, sin = compute_rope_params(8, theta_base=500_000.0, context_length=64, freq_config=ROPE_FREQ)
    assert (cos[:SEQ_LEN] - cos_hf[0]).abs().max() < 1e-6 and (sin[:SEQ_LEN] - sin_hf[0]).abs().max() < 1e-6
    assert (apply_rope(q, cos, sin) - q_hf).abs().max() < 1e-6
    assert (apply_rope(k, cos, sin) - k_hf).abs().max() < 1e-6
    # an offset picks the rows of later positions, as a KV cache needs
    assert torch.allclose(apply_rope(q[:, :, 20:], cos, sin, offset=20), q_hf[:, :, 20:], atol=1e-6)


def test_gqa_with_one_group_per_head_is_multi_head_attention():
    torch.manual_seed(0)
    mha = MultiHeadAttention(32, 32, context_length=12, dropout=0.0, num_heads=4).eval()
    torch.nn.init.zeros_(mha.out_proj.bias)
    gqa = GroupedQueryAttention(32, num_heads=4, num_kv_groups=4)
    gqa.load_state_dict({k: v for k, v in mha.state_dict().items() if k not in ("mask", "out_proj.bias")})
    x = torch.randn(2, 12, 32)
    mask = torch.ones(12, 12, dtype=torch.bool).triu(1)
    with torch.no_grad():
        out = gqa(x, mask, torch.ones(12, 8), torch.zeros(12, 8))  # cos 1, sin 0: no rotation
        assert (out - mha(x)).abs().max() < 1e-6
    with pytest.raises(ValueError, match="multiple of num_kv_groups"):
        GroupedQueryAttention(32, num_heads=4, num_kv_groups=3)


def test_llama32_parameter_counts_on_the_meta_device():
    with torch.device("meta"):
        one, three = Llama3Model(LLAMA32_CONFIG_1B), Llama3Model(LLAMA32_CONFIG_3B)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731  (a tied Parameter counts once)
    assert count(one) == 1_235_814_400  # Llama 3.2 1B, as published
    assert count(three) == 3_212_749_824
    assert one.tok_emb.weight.is_meta and one.out_head.weight is one.tok_emb.weight


def test_bad_configurations_are_refused():
    cfg = _our_config(tied=False)
    with pytest.raises(ValueError, match="n_kv_groups"):
        Llama3Model({**cfg, "n_kv_groups": 3})
    with pytest.raises(ValueError, match="lacks the keys"):
        Llama3Model({k: v for k, v in cfg.items() if k != "rope_base"})
    with pytest.raises(ValueError, match="rope_freq is None"):
        Llama3Model({**cfg, "rope_freq": {"factor": 8.0}})
    with pytest.raises(ValueError, match="dtype is None"):
        Llama3Model({**cfg, "dtype": "bfloat16"})
    with pytest.raises(ValueError, match="context_length"):
        Llama3Model(cfg)(torch.zeros(1, 65, dtype=torch.long))


def test_facade_exports():
    from shared import GroupedQueryAttention as G
    from shared import Llama3Model as L

    assert G is GroupedQueryAttention and L is Llama3Model
