"""Tests for ch04_gpt/gpt.py: the building blocks against PyTorch's built-ins, GPTModel against a book-style
reference model written here, parameter counts, generation, and the error messages for bad input.

All models are tiny (a few thousand parameters) except where GPT-2's sizes are counted on the meta device.
"""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ch04_gpt.gpt import (
    GELU,
    GPT_CONFIG_124M,
    GPT_CONFIG_355M,
    GPT_CONFIG_774M,
    GPT_CONFIG_1558M,
    GPT_CONFIGS,
    FeedForward,
    GPTModel,
    LayerNorm,
    TransformerBlock,
    count_parameters,
    generate_text_simple,
    get_gpt_config,
    model_memory_mb,
)

TINY = {
    "vocab_size": 100,
    "context_length": 16,
    "emb_dim": 32,
    "n_heads": 4,
    "n_layers": 2,
    "drop_rate": 0.0,
    "qkv_bias": False,
}


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return GPTModel({**TINY, **overrides})


def random_ids(batch=2, num_tokens=8, vocab_size=TINY["vocab_size"], seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (batch, num_tokens), generator=gen)


# --- A book-style reference model: the structure and parameter names of the book's chapter 4 code, -------
# --- written independently here so that state_dict compatibility is checked against something real. ----


class BookMultiHeadAttention(nn.Module):
    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        super().__init__()
        self.d_out, self.num_heads, self.head_dim = d_out, num_heads, d_out // num_heads
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("mask", torch.triu(torch.ones(context_length, context_length), diagonal=1))

    def forward(self, x):
        b, n, _ = x.shape

        def heads(t):
            return t.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.W_query(x)), heads(self.W_key(x)), heads(self.W_value(x))
        scores = (q @ k.transpose(2, 3)).masked_fill(self.mask.bool()[:n, :n], -torch.inf)
        weights = self.dropout(torch.softmax(scores / k.shape[-1] ** 0.5, dim=-1))
        context = (weights @ v).transpose(1, 2).contiguous().view(b, n, self.d_out)
        return self.out_proj(context)


class BookLayerNorm(nn.Module):
    def __init__(self, emb_dim):
        super().__init__()
        self.eps = 1e-5
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)
        return self.scale * (x - mean) / torch.sqrt(var + self.eps) + self.shift


class BookFeedForward(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["emb_dim"]
        self.layers = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(approximate="tanh"), nn.Linear(4 * d, d))

    def forward(self, x):
        return self.layers(x)


class BookTransformerBlock(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["emb_dim"]
        self.att = BookMultiHeadAttention(
            d, d, cfg["context_length"], cfg["drop_rate"], cfg["n_heads"], cfg["qkv_bias"]
        )
        self.ff = BookFeedForward(cfg)
        self.norm1 = BookLayerNorm(cfg["emb_dim"])
        self.norm2 = BookLayerNorm(cfg["emb_dim"])
        self.drop_shortcut = nn.Dropout(cfg["drop_rate"])

    def forward(self, x):
        shortcut = x
        x = self.drop_shortcut(self.att(self.norm1(x)))
        x = x + shortcut
        shortcut = x
        x = self.drop_shortcut(self.ff(self.norm2(x)))
        return x + shortcut


class BookGPTModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.tok_emb = nn.Embedding(cfg["vocab_size"], cfg["emb_dim"])
        self.pos_emb = nn.Embedding(cfg["context_length"], cfg["emb_dim"])
        self.drop_emb = nn.Dropout(cfg["drop_rate"])
        self.trf_blocks = nn.Sequential(*[BookTransformerBlock(cfg) for _ in range(cfg["n_layers"])])
        self.final_norm = BookLayerNorm(cfg["emb_dim"])
        self.out_head = nn.Linear(cfg["emb_dim"], cfg["vocab_size"], bias=False)

    def forward(self, in_idx):
        n = in_idx.shape[1]
        x = self.drop_emb(self.tok_emb(in_idx) + self.pos_emb(torch.arange(n, device=in_idx.device)))
        return self.out_head(self.final_norm(self.trf_blocks(x)))


# --- building blocks ------------------------------------------------------------------------------------


def _layernorm_pair(dtype):
    ours = LayerNorm(32).to(dtype)
    with torch.no_grad():
        ours.scale.copy_(torch.randn(32))
        ours.shift.copy_(torch.randn(32))
    ref = nn.LayerNorm(32, eps=1e-5).to(dtype)
    with torch.no_grad():
        ref.weight.copy_(ours.scale)
        ref.bias.copy_(ours.shift)
    return ours, ref


def test_layernorm_matches_torch_layernorm():
    torch.manual_seed(0)
    # float64: rounding differences between kernels are ~1e-15, so a tight tolerance does not flake on other
    # hardware, yet sees a changed eps (1e-6 instead of 1e-5 changes these outputs by ~1e-7).
    ours, ref = _layernorm_pair(torch.float64)
    x = torch.randn(3, 5, 32, dtype=torch.float64) * 4 + 2
    assert (ours(x) - ref(x)).abs().max() < 1e-10
    # rows with a variance near eps: here eps shapes the output (a wrong eps changes it by ~0.1 or more)
    torch.manual_seed(1)
    ours, ref = _layernorm_pair(torch.float32)
    x = torch.randn(3, 5, 32) * 3e-3
    assert (ours(x) - ref(x)).abs().max() < 1e-4
    assert ours.eps == 1e-5


def test_config_check_accepts_exactly_one():
    """1 is a valid size (one head, one layer) and a valid dropout probability; 0 and 1.01 are not."""
    cfg = get_gpt_config("124M", n_heads=1, n_layers=1, drop_rate=1.0, context_length=1, vocab_size=1)
    assert (cfg["n_heads"], cfg["n_layers"], cfg["drop_rate"]) == (1, 1, 1.0)
    TransformerBlock({**TINY, "n_heads": 1, "drop_rate": 1.0})
    for key, bad in [("n_layers", 0), ("n_heads", 0), ("context_length", 0), ("drop_rate", 1.01)]:
        with pytest.raises(ValueError, match=key):
            get_gpt_config("124M", **{key: bad})


def test_gelu_matches_torch_tanh_gelu():
    x = torch.linspace(-8, 8, 1001)
    assert (GELU()(x) - F.gelu(x, approximate="tanh")).abs().max() < 1e-6


def test_feedforward_shapes_and_layout():
    ff = FeedForward(TINY)
    assert ff(torch.randn(2, 3, 32)).shape == (2, 3, 32)
    first, act, second = ff.layers
    assert (first.in_features, first.out_features, second.out_features) == (32, 128, 32)
    assert isinstance(act, GELU)


def test_transformer_block_keeps_shape():
    block = TransformerBlock(TINY)
    assert block(torch.randn(2, 5, 32)).shape == (2, 5, 32)


# --- parameter counts and sizes -------------------------------------------------------------------------


def expected_param_count(cfg):
    """GPT-2's parameter count by formula (no qkv bias): embeddings, blocks, final norm, output layer."""
    v, c, d, n = cfg["vocab_size"], cfg["context_length"], cfg["emb_dim"], cfg["n_layers"]
    attention = 4 * d * d + d  # W_query, W_key, W_value, out_proj (+ its bias)
    feed_forward = 8 * d * d + 5 * d  # d x 4d and 4d x d, with biases
    norms = 4 * d  # scale and shift of norm1, norm2
    return v * d + c * d + n * (attention + feed_forward + norms) + 2 * d + v * d


def test_gpt2_124m_parameter_count_and_memory():
    with torch.device("meta"):
        model = GPTModel(GPT_CONFIG_124M)
    assert count_parameters(model) == 163_009_536
    assert count_parameters(model, exclude_output_head=True) == 124_412_160
    assert round(model_memory_mb(model), 2) == 621.83
    assert round(model_memory_mb(model, dtype=torch.bfloat16), 2) == round(621.83 / 2, 2)
    # 12 causal masks of 1024 x 1024 float32 values = 48 MB of buffers
    assert model_memory_mb(model, include_buffers=True) - model_memory_mb(model) == pytest.approx(48.0)


@pytest.mark.parametrize(
    "cfg, expected",
    [
        (GPT_CONFIG_124M, 163_009_536),
        (GPT_CONFIG_355M, 406_212_608),
        (GPT_CONFIG_774M, 838_220_800),
        (GPT_CONFIG_1558M, 1_637_792_000),
    ],
)
def test_all_gpt2_sizes_match_the_formula(cfg, expected):
    with torch.device("meta"):
        model = GPTModel(cfg)
    assert count_parameters(model) == expected == expected_param_count(cfg)
    head = cfg["vocab_size"] * cfg["emb_dim"]
    assert count_parameters(model, exclude_output_head=True) == expected - head


def test_count_parameters_excludes_a_replaced_head_with_bias():
    model = tiny_model()
    model.out_head = nn.Linear(TINY["emb_dim"], 2)  # as in chapter 6's classifier
    assert count_parameters(model) - count_parameters(model, exclude_output_head=True) == 32 * 2 + 2
    with pytest.raises(ValueError, match="no out_head"):
        count_parameters(nn.Linear(3, 3), exclude_output_head=True)


# --- attention implementations and weight tying ---------------------------------------------------------


def test_explicit_and_sdpa_give_the_same_logits_and_gradients():
    model = tiny_model()
    ids = random_ids(num_tokens=TINY["context_length"])
    results = {}
    for impl in ("explicit", "sdpa"):
        model.set_attention_impl(impl)
        assert all(block.att.use_sdpa == (impl == "sdpa") for block in model.trf_blocks)
        model.zero_grad()
        logits = model(ids)
        F.cross_entropy(logits.flatten(0, 1), ids.roll(-1, dims=1).flatten()).backward()
        results[impl] = (logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()})
    (logits_a, grads_a), (logits_b, grads_b) = results["explicit"], results["sdpa"]
    assert (logits_a - logits_b).abs().max() < 1e-5
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], atol=1e-5, rtol=1e-4), name


def test_attn_impl_config_key_and_default():
    assert not any(b.att.use_sdpa for b in tiny_model().trf_blocks)  # the book's explicit path by default
    model = tiny_model(attn_impl="sdpa")
    assert all(b.att.use_sdpa for b in model.trf_blocks)
    assert model.set_attention_impl("explicit") is model and model.cfg["attn_impl"] == "explicit"
    with pytest.raises(ValueError, match="attn_impl must be one of"):
        model.set_attention_impl("flash")
    with pytest.raises(ValueError, match="attn_impl must be one of"):
        tiny_model(attn_impl="fast")


def test_fused_ops_give_the_same_logits_and_gradients():
    book, fused = tiny_model(attn_impl="sdpa"), tiny_model(attn_impl="sdpa", fused_ops=True)
    fused_modules = [m for m in fused.modules() if isinstance(m, (LayerNorm, GELU))]
    assert len(fused_modules) == 3 * TINY["n_layers"] + 1 and all(m.fused for m in fused_modules)
    assert not any(m.fused for m in book.modules() if isinstance(m, (LayerNorm, GELU)))
    ids = random_ids(num_tokens=TINY["context_length"])
    results = []
    for model in (book, fused):
        logits = model(ids)
        F.cross_entropy(logits.flatten(0, 1), ids.roll(-1, dims=1).flatten()).backward()
        results.append((logits.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (logits_a, grads_a), (logits_b, grads_b) = results
    print(f"max abs logit difference, fused vs book LayerNorm/GELU: {(logits_a - logits_b).abs().max():.2e}")
    assert (logits_a - logits_b).abs().max() < 1e-5
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], atol=1e-5, rtol=1e-4), name
    # the fused functions are PyTorch's own, so a mistake in the book-style code would show here too
    x = torch.randn(4, TINY["emb_dim"])
    torch.testing.assert_close(LayerNorm(TINY["emb_dim"], fused=True)(x), nn.LayerNorm(TINY["emb_dim"])(x))


def test_fused_ops_switch_and_bad_values():
    model = tiny_model()
    assert model.set_fused_ops() is model and model.cfg["fused_ops"] is True
    assert all(m.fused for m in model.modules() if isinstance(m, (LayerNorm, GELU)))
    model.set_fused_ops(False)
    assert not any(m.fused for m in model.modules() if isinstance(m, (LayerNorm, GELU)))
    with pytest.raises(ValueError, match="fused_ops is True or False"):
        tiny_model(fused_ops="yes")
    with pytest.raises(ValueError, match="fused_ops is True or False"):
        model.set_fused_ops(1)


def test_sdpa_matches_explicit_in_eval_mode_with_dropout_configured():
    model = tiny_model(drop_rate=0.3).eval()
    ids = random_ids()
    explicit = model(ids)
    sdpa = model.set_attention_impl("sdpa")(ids)
    assert (explicit - sdpa).abs().max() < 1e-5


def test_weight_tying_shares_one_parameter():
    untied, tied = tiny_model(), tiny_model(tie_weights=True)
    assert untied.out_head.weight is not untied.tok_emb.weight
    assert tied.out_head.weight is tied.tok_emb.weight
    assert count_parameters(untied) - count_parameters(tied) == TINY["vocab_size"] * TINY["emb_dim"]
    assert count_parameters(tied) == count_parameters(tied, exclude_output_head=True)
    # a training step changes the shared matrix through both uses, and it stays shared
    F.cross_entropy(tied(random_ids()).flatten(0, 1), random_ids().flatten()).backward()
    torch.optim.SGD(tied.parameters(), lr=0.1).step()
    assert tied.out_head.weight is tied.tok_emb.weight


def test_separate_dropout_rates():
    model = tiny_model(drop_rate=0.1, drop_rate_emb=0.2, drop_rate_attn=0.3, drop_rate_shortcut=0.4)
    assert model.drop_emb.p == 0.2
    assert {b.att.dropout.p for b in model.trf_blocks} == {0.3}
    assert {b.drop_shortcut.p for b in model.trf_blocks} == {0.4}
    fallback = tiny_model(drop_rate=0.15)
    assert fallback.drop_emb.p == 0.15
    assert {b.att.dropout.p for b in fallback.trf_blocks} == {b.drop_shortcut.p for b in fallback.trf_blocks}


# --- compatibility with the book's code ---------------------------------------------------------------


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_state_dict_matches_the_book_layout(qkv_bias):
    cfg = {**TINY, "qkv_bias": qkv_bias}
    ours, book = GPTModel(cfg), BookGPTModel(cfg)
    ours_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    book_shapes = {k: tuple(v.shape) for k, v in book.state_dict().items()}
    assert ours_shapes == book_shapes
    for key in [
        "tok_emb.weight",
        "pos_emb.weight",
        "trf_blocks.0.att.W_query.weight",
        "trf_blocks.1.att.W_value.weight",
        "trf_blocks.0.att.out_proj.bias",
        "trf_blocks.0.att.mask",
        "trf_blocks.0.ff.layers.0.weight",
        "trf_blocks.0.ff.layers.2.bias",
        "trf_blocks.1.norm1.scale",
        "trf_blocks.1.norm2.shift",
        "final_norm.scale",
        "out_head.weight",
    ]:
        assert key in ours_shapes, key


@pytest.mark.parametrize("impl", ["explicit", "sdpa"])
def test_weights_load_both_ways_with_identical_logits(impl):
    cfg = {**TINY, "qkv_bias": True}
    ids = random_ids()
    torch.manual_seed(5)
    book = BookGPTModel(cfg).eval()
    ours = GPTModel({**cfg, "attn_impl": impl}).eval()
    ours.load_state_dict(book.state_dict())  # strict: every key must match
    assert (ours(ids) - book(ids)).abs().max() < 1e-5

    torch.manual_seed(6)
    ours2 = GPTModel({**cfg, "attn_impl": impl}).eval()
    book2 = BookGPTModel(cfg).eval()
    book2.load_state_dict(ours2.state_dict())
    assert (ours2(ids) - book2(ids)).abs().max() < 1e-5


def test_seeded_initialization_equals_the_books():
    """Same seed, same weights: the layers are created in the book's order, so book outputs reproduce."""
    torch.manual_seed(123)
    ours = GPTModel(TINY)
    torch.manual_seed(123)
    book = BookGPTModel(TINY)
    book_state = book.state_dict()
    for key, value in ours.state_dict().items():
        assert torch.equal(value, book_state[key]), key


def test_training_mode_dropout_stream_equals_the_books():
    """With dropout on, the explicit path draws the same random numbers as the book's code."""
    cfg = {**TINY, "drop_rate": 0.2}
    torch.manual_seed(3)
    ours = GPTModel(cfg)
    book = BookGPTModel(cfg)
    book.load_state_dict(ours.state_dict())
    ids = random_ids()
    torch.manual_seed(9)
    out_ours = ours(ids)
    torch.manual_seed(9)
    out_book = book(ids)
    assert (out_ours - out_book).abs().max() < 1e-5


# --- generation -------------------------------------------------------------------------------------------


def manual_greedy(model, idx, steps, context_size):
    for _ in range(steps):
        with torch.no_grad():
            logits = model(idx[:, -context_size:])
        probas = torch.softmax(logits[:, -1], dim=-1)  # as the book does; argmax is the same without it
        idx = torch.cat([idx, torch.argmax(probas, dim=-1, keepdim=True)], dim=1)
    return idx


def test_generate_is_greedy_and_has_the_right_shape():
    model = tiny_model().eval()
    idx = random_ids(batch=3, num_tokens=5)
    out = generate_text_simple(model, idx, max_new_tokens=7, context_size=TINY["context_length"])
    assert out.shape == (3, 5 + 7) and out.dtype == torch.long
    assert torch.equal(out[:, :5], idx)
    assert torch.equal(out, manual_greedy(model, idx, 7, TINY["context_length"]))
    first = model(idx)[:, -1].argmax(dim=-1)
    assert torch.equal(out[:, 5], first)


def test_generate_is_deterministic_under_a_seed():
    idx = random_ids(num_tokens=3)
    outs = [generate_text_simple(tiny_model(seed=42).eval(), idx, 6, 16) for _ in range(2)]
    assert torch.equal(outs[0], outs[1])
    other = generate_text_simple(tiny_model(seed=43).eval(), idx, 6, 16)
    assert not torch.equal(outs[0], other)


def test_generate_crops_to_the_context_size():
    model = tiny_model().eval()
    long_prompt = random_ids(num_tokens=TINY["context_length"] + 4)  # longer than the model can read
    out = generate_text_simple(model, long_prompt, max_new_tokens=5, context_size=TINY["context_length"])
    assert out.shape == (2, TINY["context_length"] + 9)
    assert torch.equal(out, manual_greedy(model, long_prompt, 5, TINY["context_length"]))
    short = generate_text_simple(model, long_prompt[:, :6], max_new_tokens=4, context_size=2)
    assert torch.equal(short, manual_greedy(model, long_prompt[:, :6], 4, 2))


def test_generate_needs_no_grad_and_zero_tokens_is_a_noop():
    model = tiny_model().eval()
    idx = random_ids()
    assert torch.equal(generate_text_simple(model, idx, 0, 16), idx)
    out = generate_text_simple(model, idx, 2, 16)
    assert not out.requires_grad


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_generate_runs_on_the_models_device():
    model = tiny_model().eval()
    idx = random_ids()
    expected = generate_text_simple(model, idx, 5, 16)
    out = generate_text_simple(model.to("cuda"), idx, 5, 16)  # idx stays on the CPU: moved for us
    assert out.device.type == "cuda"
    assert torch.equal(out.cpu(), expected)
    with pytest.raises(ValueError, match="token id 100 is out of range"):
        model(torch.tensor([[1, 100]], device="cuda"))


# --- configurations ---------------------------------------------------------------------------------------


def test_get_gpt_config_names_and_aliases():
    sizes = ["gpt2-small (124M)", "gpt2-medium (355M)", "gpt2-large (774M)", "gpt2-xl (1558M)"]
    assert list(GPT_CONFIGS) == sizes
    small_names = [
        "gpt2-small (124M)",
        "124M",
        "124m",
        "gpt2",
        "GPT2-small",
        "openai-community/gpt2",
        " gpt2 ",
    ]
    for name in small_names:
        assert get_gpt_config(name) == GPT_CONFIG_124M, name
    assert get_gpt_config("355M") == get_gpt_config("gpt2-medium") == GPT_CONFIG_355M
    assert get_gpt_config("gpt2-large")["emb_dim"] == 1280
    xl = get_gpt_config("openai-community/gpt2-xl")
    assert (xl["emb_dim"], xl["n_layers"], xl["n_heads"]) == (1600, 48, 25)


def test_get_gpt_config_returns_a_copy_with_overrides():
    cfg = get_gpt_config("124M", context_length=256, drop_rate=0.0, qkv_bias=True, attn_impl="sdpa")
    assert cfg["context_length"] == 256 and cfg["qkv_bias"] is True and cfg["attn_impl"] == "sdpa"
    cfg["emb_dim"] = 1
    assert GPT_CONFIG_124M["emb_dim"] == 768 and GPT_CONFIG_124M["context_length"] == 1024


# --- error messages ---------------------------------------------------------------------------------------


def test_unknown_configuration_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown GPT-2 configuration 'gpt3'.*gpt2-small \(124M\)"):
        get_gpt_config("gpt3")


def test_unknown_override_key_is_refused():
    with pytest.raises(ValueError, match=r"unknown configuration keys \['drop_rate_atn'\]"):
        get_gpt_config("124M", drop_rate_atn=0.1)


def test_emb_dim_not_divisible_by_n_heads():
    with pytest.raises(ValueError, match=r"emb_dim \(32\) must be divisible by n_heads \(5\)"):
        GPTModel({**TINY, "n_heads": 5})
    with pytest.raises(ValueError, match=r"emb_dim \(768\) must be divisible by n_heads \(10\)"):
        get_gpt_config("124M", n_heads=10)


def test_missing_config_keys_are_listed():
    cfg = {k: v for k, v in TINY.items() if k not in ("n_layers", "qkv_bias")}
    with pytest.raises(ValueError, match=r"lacks the keys \['n_layers', 'qkv_bias'\]"):
        GPTModel(cfg)
    with pytest.raises(TypeError, match="dict like GPT_CONFIG_124M"):
        GPTModel(["not", "a", "dict"])


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("n_layers", 0, "n_layers must be a positive integer"),
        ("emb_dim", 32.0, "emb_dim must be a positive integer"),
        ("drop_rate", 1.5, "drop_rate is a dropout probability"),
        ("drop_rate_attn", -0.1, "drop_rate_attn is a dropout probability"),
    ],
)
def test_bad_config_values(key, value, message):
    with pytest.raises(ValueError, match=message):
        GPTModel({**TINY, key: value})


def test_input_longer_than_the_context():
    message = r"has 17 tokens but the model's context_length is 16.*idx\[:, -16:\]"
    with pytest.raises(ValueError, match=message):
        tiny_model()(random_ids(num_tokens=17))


@pytest.mark.parametrize("bad_id", [100, 12345, -1])
def test_token_ids_out_of_range(bad_id):
    ids = random_ids()
    ids[1, 3] = bad_id
    with pytest.raises(ValueError, match=rf"token id {bad_id} is out of range: the vocabulary has 100 ids"):
        tiny_model()(ids)


def test_wrong_dtype_and_rank():
    model = tiny_model()
    with pytest.raises(TypeError, match="integer tensor"):
        model(torch.zeros(1, 4))
    with pytest.raises(TypeError, match="integer tensor"):
        model(torch.zeros(1, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="expected a tensor of token ids, got list"):
        model([[1, 2, 3]])
    with pytest.raises(ValueError, match=r"shape \(batch, num_tokens\), got \(4,\).*unsqueeze\(0\)"):
        model(torch.tensor([1, 2, 3, 4]))
    with pytest.raises(ValueError, match=r"got \(1, 2, 3\)"):
        model(torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="no token ids"):
        model(torch.zeros(1, 0, dtype=torch.long))


def test_other_integer_dtypes_are_accepted():
    model = tiny_model().eval()
    ids = random_ids()
    expected = model(ids)
    for dtype in (torch.int32, torch.int16, torch.uint8):
        assert torch.equal(model(ids.to(dtype)), expected), dtype


def test_generate_argument_errors():
    model = tiny_model()
    idx = random_ids()
    with pytest.raises(ValueError, match="max_new_tokens must be an integer >= 0"):
        generate_text_simple(model, idx, -1, 16)
    with pytest.raises(ValueError, match="context_size must be a positive integer"):
        generate_text_simple(model, idx, 2, 0)
    with pytest.raises(TypeError, match="idx must be a tensor"):
        generate_text_simple(model, [[1, 2]], 2, 16)
    with pytest.raises(ValueError, match="unsqueeze"):
        generate_text_simple(model, torch.tensor([1, 2]), 2, 16)


def test_hello_i_am_encodes_like_the_book():
    from shared.data import gpt2_encoding

    assert gpt2_encoding().encode("Hello, I am") == [15496, 11, 314, 716]


def test_padded_vocab_computes_more_scores_and_returns_the_vocabulary():
    padded = tiny_model(padded_vocab_size=128)
    vocab = TINY["vocab_size"]
    assert padded.out_head.weight.shape == (128, TINY["emb_dim"])
    assert padded.tok_emb.weight.shape == (vocab, TINY["emb_dim"])  # inputs are real tokens only
    ids = torch.randint(0, vocab, (2, 6), generator=torch.Generator().manual_seed(1))
    logits = padded(ids)
    assert logits.shape == (2, 6, vocab)
    # the same function as a model whose output layer has only the real rows
    plain = tiny_model()
    state = padded.state_dict()
    state["out_head.weight"] = state["out_head.weight"][:vocab]
    plain.load_state_dict(state)
    torch.testing.assert_close(plain(ids), logits)
    F.cross_entropy(logits.flatten(0, 1), ids.flatten()).backward()
    assert padded.out_head.weight.grad[vocab:].count_nonzero() == 0  # the extra rows never count
    tied = tiny_model(padded_vocab_size=128, tie_weights=True)
    assert tied.tok_emb.weight.shape == (128, TINY["emb_dim"]) and tied(ids).shape == (2, 6, vocab)
    with pytest.raises(ValueError, match=f"token id {vocab} is out of range"):
        tied(torch.tensor([[vocab]]))  # a padding row is no token


@pytest.mark.parametrize("bad", [TINY["vocab_size"] - 1, 1.5, True, "128"])
def test_padded_vocab_must_hold_the_vocabulary(bad):
    with pytest.raises(ValueError, match="padded_vocab_size is None or an integer >= vocab_size"):
        tiny_model(padded_vocab_size=bad)
