"""Tests for ch03_attention/attention.py: every attention class against an independent reference."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ch03_attention.attention import (
    CausalAttention,
    MultiHeadAttention,
    MultiHeadAttentionWrapper,
    SelfAttention_v1,
    SelfAttention_v2,
)

# (batch, num_tokens, context_length, d_in, d_out, num_heads); several with num_tokens < context_length
SHAPES = [
    (2, 6, 6, 3, 2, 2),
    (3, 5, 16, 8, 12, 3),
    (1, 1, 4, 4, 4, 1),
    (4, 33, 64, 32, 48, 4),
    (2, 128, 256, 64, 64, 8),
]


def _mha(d_in, d_out, context_length, num_heads, dropout=0.0, qkv_bias=False, seed=0, **kwargs):
    torch.manual_seed(seed)
    return MultiHeadAttention(d_in, d_out, context_length, dropout, num_heads, qkv_bias, **kwargs)


def _reference_mha(mha, x):
    """Same projections, head split and out_proj, with torch's fused attention in the middle."""
    b, t, _ = x.shape
    h, hd = mha.num_heads, mha.head_dim

    def split(proj):
        return proj(x).view(b, t, h, hd).transpose(1, 2)

    context = F.scaled_dot_product_attention(
        split(mha.W_query), split(mha.W_key), split(mha.W_value), is_causal=True
    )
    return mha.out_proj(context.transpose(1, 2).reshape(b, t, h * hd))


@pytest.mark.parametrize("qkv_bias", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_mha_matches_torch_sdpa_reference(shape, qkv_bias):
    b, t, ctx, d_in, d_out, heads = shape
    mha = _mha(d_in, d_out, ctx, heads, dropout=0.3, qkv_bias=qkv_bias).eval()
    x = torch.randn(b, t, d_in, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (mha(x) - _reference_mha(mha, x)).abs().max().item()
    print(f"max abs diff explicit MHA vs torch SDPA reference {shape} bias={qkv_bias}: {diff:.2e}")
    assert diff < 1e-6


@pytest.mark.parametrize("shape", SHAPES)
def test_sdpa_path_equals_explicit_path(shape):
    b, t, ctx, d_in, d_out, heads = shape
    mha = _mha(d_in, d_out, ctx, heads, dropout=0.5).eval()
    x = torch.randn(b, t, d_in, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        explicit = mha(x)
        mha.use_sdpa = True  # toggled after construction, same weights
        fused = mha(x)
    diff = (explicit - fused).abs().max().item()
    print(f"max abs diff use_sdpa=True vs False {shape}: {diff:.2e}")
    assert explicit.shape == (b, t, d_out)
    assert diff < 1e-6


def test_use_sdpa_constructor_flag():
    assert _mha(4, 4, 8, 2).use_sdpa is False
    assert _mha(4, 4, 8, 2, use_sdpa=True).use_sdpa is True
    with pytest.raises(TypeError):
        MultiHeadAttention(4, 4, 8, 0.0, 2, False, True)  # use_sdpa is keyword-only


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_wrapper_equals_fused_module_with_copied_weights(qkv_bias):
    d_in, d_out, heads, ctx = 10, 12, 3, 9
    head_dim = d_out // heads
    torch.manual_seed(3)
    wrapper = MultiHeadAttentionWrapper(d_in, head_dim, ctx, 0.0, heads, qkv_bias).eval()
    fused = _mha(d_in, d_out, ctx, heads, qkv_bias=qkv_bias).eval()
    with torch.no_grad():
        for h, head in enumerate(wrapper.heads):
            rows = slice(h * head_dim, (h + 1) * head_dim)  # head h owns these output features
            for name in ("W_query", "W_key", "W_value"):
                getattr(fused, name).weight[rows] = getattr(head, name).weight
                if qkv_bias:
                    getattr(fused, name).bias[rows] = getattr(head, name).bias
        fused.out_proj.weight.copy_(torch.eye(d_out))  # the wrapper has no output projection
        fused.out_proj.bias.zero_()
        x = torch.randn(2, 7, d_in)
        diff = (wrapper(x) - fused(x)).abs().max().item()
    print(f"max abs diff wrapper vs fused MHA: {diff:.2e}")
    assert diff < 1e-6


@pytest.mark.parametrize("use_sdpa", [False, True])
def test_causality(use_sdpa):
    mha = _mha(8, 8, 12, 2, use_sdpa=use_sdpa).eval()
    x = torch.randn(2, 10, 8)
    with torch.no_grad():
        base = mha(x)
        for t in range(9):
            changed = x.clone()
            changed[:, t + 1] = torch.randn(2, 8) * 5
            out = mha(changed)
            # the changed token is scaled up 5x, so any leak would move the outputs far more than atol
            assert torch.allclose(out[:, : t + 1], base[:, : t + 1], atol=1e-6), (
                f"position <= {t} saw token {t + 1}"
            )
            assert not torch.allclose(
                out[:, t + 1], base[:, t + 1]
            )  # the changed position itself does change


def test_causal_attention_is_causal():
    torch.manual_seed(0)
    ca = CausalAttention(5, 3, 8, 0.0).eval()
    x = torch.randn(1, 8, 5)
    changed = x.clone()
    changed[:, 5:] = 0.0
    with torch.no_grad():
        assert torch.equal(ca(x)[:, :5], ca(changed)[:, :5])


@pytest.mark.parametrize("use_sdpa", [False, True])
def test_dropout_only_in_training_mode(use_sdpa):
    mha = _mha(16, 16, 32, 4, dropout=0.5, use_sdpa=use_sdpa)
    x = torch.randn(3, 20, 16)
    mha.eval()
    assert torch.equal(mha(x), mha(x))
    mha.train()
    assert not torch.allclose(mha(x), mha(x))

    no_drop = _mha(16, 16, 32, 4, dropout=0.0, use_sdpa=use_sdpa)
    train_out = no_drop.train()(x)
    assert torch.allclose(train_out, no_drop.eval()(x), atol=1e-7)


def test_wrapper_and_causal_attention_dropout_only_in_training_mode():
    torch.manual_seed(0)
    for module in (CausalAttention(8, 4, 16, 0.5), MultiHeadAttentionWrapper(8, 4, 16, 0.5, 2)):
        x = torch.randn(2, 12, 8)
        assert torch.equal(module.eval()(x), module(x))
        module.train()
        assert not torch.allclose(module(x), module(x))


def test_self_attention_v1_equals_v2_after_weight_transfer():
    torch.manual_seed(123)
    v1 = SelfAttention_v1(3, 2)
    torch.manual_seed(789)
    v2 = SelfAttention_v2(3, 2)
    x = torch.rand(6, 3)
    assert not torch.allclose(v1(x), v2(x))
    with torch.no_grad():
        for name in ("W_query", "W_key", "W_value"):
            getattr(v1, name).copy_(getattr(v2, name).weight.T)  # nn.Linear stores (d_out, d_in)
    diff = (v1(x) - v2(x)).abs().max().item()
    print(f"max abs diff SelfAttention_v1 vs v2: {diff:.2e}")
    assert diff < 1e-6
    assert torch.allclose(v1(x[None].expand(2, -1, -1))[1], v2(x))  # batched input works too


def test_self_attention_matches_naive_loops():
    torch.manual_seed(5)
    sa = SelfAttention_v1(4, 3)
    x = torch.rand(5, 4)
    q, k, v = x @ sa.W_query, x @ sa.W_key, x @ sa.W_value
    expected = torch.zeros(5, 3)
    for i in range(5):
        scores = torch.tensor([torch.dot(q[i], k[j]).item() for j in range(5)]) / 3**0.5
        weights = scores.exp() / scores.exp().sum()
        for j in range(5):
            expected[i] += weights[j] * v[j]
    assert torch.allclose(sa(x), expected, atol=1e-6)


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_causal_attention_equals_single_head_mha(qkv_bias):
    torch.manual_seed(7)
    ca = CausalAttention(6, 4, 10, 0.0, qkv_bias).eval()
    mha = _mha(6, 4, 10, 1, qkv_bias=qkv_bias).eval()
    with torch.no_grad():
        for name in ("W_query", "W_key", "W_value"):
            getattr(mha, name).load_state_dict(getattr(ca, name).state_dict())
        mha.out_proj.weight.copy_(torch.eye(4))
        mha.out_proj.bias.zero_()
        x = torch.randn(3, 8, 6)
        assert torch.allclose(ca(x), mha(x), atol=1e-6)
        assert torch.equal(ca.mask, mha.mask)


def test_book_numbers():
    """Seeded like the book, the modules reproduce the book's printed numbers."""
    inputs = torch.tensor(
        [[0.43, 0.15, 0.89], [0.55, 0.87, 0.66], [0.57, 0.85, 0.64], [0.22, 0.58, 0.33], [0.77, 0.25, 0.10],
         [0.05, 0.80, 0.55]]
    )  # fmt: skip
    torch.manual_seed(123)
    assert torch.allclose(SelfAttention_v1(3, 2)(inputs)[1], torch.tensor([0.3061, 0.8210]), atol=1e-4)
    torch.manual_seed(789)
    assert torch.allclose(SelfAttention_v2(3, 2)(inputs)[0], torch.tensor([-0.0739, 0.0713]), atol=1e-4)
    batch = torch.stack((inputs, inputs))
    torch.manual_seed(123)
    assert torch.allclose(
        MultiHeadAttention(3, 2, 6, 0.0, 2)(batch)[0, 0], torch.tensor([0.3190, 0.4858]), atol=1e-4
    )


def test_d_out_not_divisible_by_num_heads():
    with pytest.raises(ValueError, match=r"770.*12"):
        MultiHeadAttention(768, 770, 1024, 0.0, num_heads=12)
    with pytest.raises(ValueError, match="num_heads"):
        MultiHeadAttention(8, 8, 16, 0.0, num_heads=0)
    with pytest.raises(ValueError, match="num_heads"):
        MultiHeadAttentionWrapper(8, 8, 16, 0.0, num_heads=0)


@pytest.mark.parametrize(
    "module", [_mha(4, 4, 6, 2), CausalAttention(4, 4, 6, 0.0), MultiHeadAttentionWrapper(4, 2, 6, 0.0, 2)]
)
def test_input_errors(module):
    with pytest.raises(ValueError, match=r"7 tokens.*context_length is 6.*crop"):
        module(torch.randn(1, 7, 4))
    with pytest.raises(ValueError, match=r"unsqueeze\(0\)"):
        module(torch.randn(5, 4))  # missing batch dimension
    with pytest.raises(ValueError, match="shape"):
        module(torch.randn(1, 1, 5, 4))
    with pytest.raises(ValueError, match="d_in=4"):
        module(torch.randn(1, 5, 3))
    with pytest.raises(TypeError, match="Tensor"):
        module([[0.0] * 4])
    assert module(torch.randn(1, 6, 4)).shape[:2] == (1, 6)  # exactly context_length is fine


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_state_dict_keys(qkv_bias):
    keys = set(_mha(8, 8, 16, 2, qkv_bias=qkv_bias).state_dict())
    expected = {
        "W_query.weight",
        "W_key.weight",
        "W_value.weight",
        "out_proj.weight",
        "out_proj.bias",
        "mask",
    }
    if qkv_bias:
        expected |= {"W_query.bias", "W_key.bias", "W_value.bias"}
    assert keys == expected
    # the mask is a buffer, not a parameter, and loads back into a fresh module
    mha = _mha(8, 8, 16, 2, qkv_bias=qkv_bias, seed=1)
    assert "mask" not in dict(mha.named_parameters())
    mha.load_state_dict(_mha(8, 8, 16, 2, qkv_bias=qkv_bias, seed=2).state_dict(), strict=True)
    assert torch.equal(mha.mask, torch.triu(torch.ones(16, 16), diagonal=1))


def test_gradients_match_between_paths():
    mha = _mha(16, 24, 32, 4, dropout=0.0, qkv_bias=True)
    x = torch.randn(2, 20, 16)
    target = torch.randn(2, 20, 24)
    grads = {}
    for use_sdpa in (False, True):
        mha.zero_grad()
        mha.use_sdpa = use_sdpa
        x_in = x.clone().requires_grad_(True)
        F.mse_loss(mha(x_in), target).backward()
        grads[use_sdpa] = {n: p.grad.clone() for n, p in mha.named_parameters()} | {"input": x_in.grad}
    worst = 0.0
    for name, g in grads[False].items():
        assert g.abs().sum() > 0, f"no gradient reached {name}"
        worst = max(worst, (g - grads[True][name]).abs().max().item())
    print(f"max abs grad diff explicit vs sdpa: {worst:.2e}")
    assert worst < 1e-5


def test_module_moves_with_dtype():
    mha = _mha(8, 8, 16, 2).to(torch.bfloat16).eval()
    out = mha(torch.randn(1, 10, 8, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert isinstance(mha.dropout, nn.Dropout)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_paths_agree_on_cuda(dtype):
    """On a GPU use_sdpa=True runs flash / memory-efficient kernels: still the same function."""
    mha = _mha(768, 768, 1024, 12).cuda().eval()
    x = torch.randn(2, 512, 768, device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        explicit = mha(x).float()
        mha.use_sdpa = True
        fused = mha(x).float()
        reference = _reference_mha(mha, x).float()
    diff = (explicit - fused).abs().max().item()
    print(f"max abs diff on CUDA ({dtype}): explicit vs sdpa {diff:.2e}")
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    assert diff < tol
    assert (fused - reference).abs().max().item() < tol
