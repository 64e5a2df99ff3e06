"""Tests for the KV cache (ch04_gpt bonus section): MultiHeadAttention, GPTModel and generation with a cache
against the same computations without one.

The reference is always the uncached code path of the same model (itself tested against independent
references in test_attention.py and test_gpt.py). Models are tiny: context 16, so that generating 40 tokens
runs well past the context length and covers the refill of the cache from the cropped window.
"""

from types import SimpleNamespace

import pytest
import torch

from ch03_attention.attention import MultiHeadAttention
from ch04_gpt.gpt import (
    GPTModel,
    KVCache,
    generate_text_cached,
    generate_text_simple,
    get_gpt_config,
    next_token_logits,
)

# A tiny GPT-2: dropout on purpose, since eval() must switch it off for cached and uncached passes to agree
TINY = get_gpt_config(
    "124M", vocab_size=100, context_length=16, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.1
)
IMPLS = ["explicit", "sdpa"]


def tiny_model(impl="explicit", seed=0, **overrides):
    torch.manual_seed(seed)
    return GPTModel({**TINY, "attn_impl": impl, **overrides}).eval()


def random_ids(batch=3, num_tokens=8, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, TINY["vocab_size"], (batch, num_tokens), generator=gen)


def cached_pass(model, ids, pieces):
    """Logits of ``ids`` fed to ``model`` in pieces of the given lengths through one KVCache."""
    cache = KVCache(len(model.trf_blocks))
    logits, start = [], 0
    with torch.no_grad():
        for length in pieces:
            logits.append(model(ids[:, start : start + length], kv_cache=cache))
            start += length
            assert cache.num_tokens == start
    return torch.cat(logits, dim=1), cache


# --- attention layer ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("pieces", [[12], [5, 1, 1, 1], [4, 3, 5], [1] * 12, [7, 5]])
def test_mha_in_pieces_equals_one_pass(impl, pieces):
    torch.manual_seed(0)
    mha = MultiHeadAttention(24, 24, 16, 0.3, num_heads=3, use_sdpa=impl == "sdpa").eval()
    x = torch.randn(2, sum(pieces), 24, generator=torch.Generator().manual_seed(3))
    layer_cache = SimpleNamespace(keys=None, values=None)  # any object with these two attributes will do
    outputs, start = [], 0
    with torch.no_grad():
        full = mha(x)
        for length in pieces:
            outputs.append(mha(x[:, start : start + length], kv_cache=layer_cache))
            start += length
    diff = (torch.cat(outputs, dim=1) - full).abs().max().item()
    print(f"MHA {impl} pieces {pieces}: max abs diff {diff:.2e}")
    assert diff < 1e-5
    assert layer_cache.keys.shape == layer_cache.values.shape == (2, 3, sum(pieces), 8)


def test_mha_cache_errors_leave_the_cache_unchanged():
    mha = MultiHeadAttention(8, 8, 6, 0.0, num_heads=2).eval()
    layer_cache = SimpleNamespace(keys=None, values=None)
    with torch.no_grad():
        mha(torch.randn(2, 4, 8), kv_cache=layer_cache)
        keys = layer_cache.keys
        with pytest.raises(
            ValueError, match=r"cache holds 4 tokens and the input adds 3, more than context_length 6"
        ):
            mha(torch.randn(2, 3, 8), kv_cache=layer_cache)
        with pytest.raises(ValueError, match="the cache holds 2 sequences but the input has 1"):
            mha(torch.randn(1, 1, 8), kv_cache=layer_cache)
        assert layer_cache.keys is keys
        mha(torch.randn(2, 2, 8), kv_cache=layer_cache)  # exactly fills the context: allowed
    assert layer_cache.keys.shape[2] == 6


# --- GPTModel with a cache ----------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("pieces", [[16], [6, 1, 1, 1, 1], [3, 4, 1, 8], [1] * 16])
def test_cached_logits_equal_the_full_pass(impl, pieces):
    model = tiny_model(impl)
    ids = random_ids(num_tokens=sum(pieces))
    with torch.no_grad():
        full = model(ids)
    cached, cache = cached_pass(model, ids, pieces)
    diff = (cached - full).abs().max().item()
    print(f"GPTModel {impl} pieces {pieces}: max abs diff of the logits {diff:.2e}")
    assert diff < 1e-5
    assert cache.num_tokens == sum(pieces)
    assert cache.layers[0].keys.shape == (3, TINY["n_heads"], sum(pieces), TINY["emb_dim"] // TINY["n_heads"])


def test_the_cache_leaves_the_model_unchanged():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cached_pass(model, random_ids(), [5, 1, 2])
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert [name for name, _ in model.named_buffers()] == [f"trf_blocks.{i}.att.mask" for i in range(2)]


def test_too_many_tokens_for_the_context():
    model = tiny_model()
    ids = random_ids(num_tokens=16)
    _, cache = cached_pass(model, ids, [10])
    message = r"the cache holds 10 tokens and the input adds 7, more than the model's context_length 16"
    with pytest.raises(ValueError, match=message):
        model(ids[:, :7], kv_cache=cache)
    assert cache.num_tokens == 10  # the failed call stored nothing
    with torch.no_grad():
        model(ids[:, 10:16], kv_cache=cache)  # 10 + 6 = 16 fits exactly
    with pytest.raises(ValueError, match="holds 16 tokens and the input adds 1"):
        model(ids[:, :1], kv_cache=cache)


def test_cache_type_layers_and_batch_are_checked():
    model = tiny_model()
    with pytest.raises(TypeError, match="kv_cache must be a KVCache"):
        model(random_ids(), kv_cache={})
    with pytest.raises(ValueError, match=r"the cache has 3 layers but the model has 2 .*KVCache\(2\)"):
        model(random_ids(), kv_cache=KVCache(3))
    _, cache = cached_pass(model, random_ids(batch=3), [4])
    with pytest.raises(ValueError, match="the cache holds 3 sequences but the input has 2"):
        model(random_ids(batch=2, num_tokens=1), kv_cache=cache)
    for bad in (0, -1, 2.0, True, "2"):
        with pytest.raises(ValueError, match="n_layers must be a positive integer"):
            KVCache(bad)


def test_reset_and_reuse():
    model = tiny_model()
    ids = random_ids(num_tokens=9)
    fresh, _ = cached_pass(model, ids, [5, 4])
    cache = KVCache(2)
    assert cache.num_tokens == 0 and repr(cache) == "KVCache(2 layers, 0 tokens)"
    with torch.no_grad():
        model(random_ids(seed=7, num_tokens=12), kv_cache=cache)  # another text first
        assert repr(cache) == "KVCache(2 layers, 12 tokens)"
        cache.reset()
        assert cache.num_tokens == 0 and all(layer.keys is None for layer in cache.layers)
        reused = torch.cat([model(ids[:, :5], kv_cache=cache), model(ids[:, 5:], kv_cache=cache)], dim=1)
    assert torch.equal(reused, fresh)


# --- generation ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("prompt_len", [1, 5, 15, 16, 20])
@pytest.mark.parametrize("context_size", [16, 5])
def test_cached_generation_gives_the_same_tokens(impl, prompt_len, context_size):
    # 40 new tokens with context 16: the window slides and the cache is refilled for most steps
    model = tiny_model(impl)
    prompt = random_ids(batch=3, num_tokens=prompt_len, seed=prompt_len)
    expected = generate_text_simple(model, prompt, max_new_tokens=40, context_size=context_size)
    got = generate_text_cached(model, prompt, max_new_tokens=40, context_size=context_size)
    assert got.shape == (3, prompt_len + 40)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("impl", IMPLS)
def test_next_token_logits_with_and_without_cache(impl):
    model = tiny_model(impl)
    idx = random_ids(num_tokens=3)
    cache = KVCache(2)
    worst = 0.0
    for _ in range(30):  # from 3 to 32 tokens: inside the context, then past it (refills)
        plain = next_token_logits(model, idx, 16)
        cached = next_token_logits(model, idx, 16, cache)
        worst = max(worst, (cached - plain).abs().max().item())
        assert cache.num_tokens == min(idx.shape[1], 16)
        idx = torch.cat((idx, plain.argmax(dim=-1, keepdim=True)), dim=1)
    print(f"next_token_logits {impl}: max abs diff cached vs uncached over 30 steps {worst:.2e}")
    assert worst < 1e-5
    assert not cached.requires_grad


def test_next_token_logits_refuses_a_cache_of_another_text():
    model = tiny_model()
    cache = KVCache(2)
    next_token_logits(model, random_ids(num_tokens=6), 16, cache)
    with pytest.raises(ValueError, match="the cache already holds 6 tokens but idx has 4"):
        next_token_logits(model, random_ids(num_tokens=4), 16, cache)


def test_cached_generation_argument_errors_and_edge_cases():
    model = tiny_model()
    idx = random_ids()
    assert torch.equal(generate_text_cached(model, idx, 0, 16), idx)
    with pytest.raises(ValueError, match="max_new_tokens must be an integer >= 0"):
        generate_text_cached(model, idx, -1, 16)
    with pytest.raises(ValueError, match="context_size must be a positive integer"):
        generate_text_cached(model, idx, 2, 0)
    with pytest.raises(ValueError, match="unsqueeze"):
        generate_text_cached(model, torch.tensor([1, 2]), 2, 16)
    with pytest.raises(ValueError, match="context_length is 16"):  # as generate_text_simple does
        generate_text_cached(model, random_ids(num_tokens=20), 2, 32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("impl", IMPLS)
def test_cached_generation_on_the_gpu(impl):
    model = tiny_model(impl)
    prompt = random_ids(num_tokens=5)
    expected = generate_text_simple(model, prompt, 40, 16)
    got = generate_text_cached(model.to("cuda"), prompt, 40, 16)
    assert got.device.type == "cuda"
    assert torch.equal(got.cpu(), expected)
