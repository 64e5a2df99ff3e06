"""The diagrams of the bonus lessons on today's open models (llama_qwen/): GPT to Llama, then Qwen3."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt

from shared.diagrams._draw import BLUE, GREEN, GREY, ORANGE, PURPLE, RED, _arrow, _box, _canvas, _show

# ---------------------------------------------------------------------------------------------------------
# GPT to Llama (llama_qwen/gpt_to_llama.ipynb)
# ---------------------------------------------------------------------------------------------------------


def _block_column(ax, x, title, rows, color_changed=ORANGE):
    """One transformer block drawn bottom-up at x: ``rows`` are (label, changed) pairs."""
    ax.text(x, 5.55, title, ha="center", va="center", fontsize=10, weight="bold")
    ys = [0.45 + 0.72 * k for k in range(len(rows))]
    for (label, changed), y in zip(rows, ys, strict=True):
        _box(ax, x, y, 2.6, 0.46, label, color_changed if changed else GREY, fontsize=8)
    for y0, y1 in zip(ys[:-1], ys[1:], strict=True):
        _arrow(ax, (x, y0 + 0.25), (x, y1 - 0.25))


def gpt_to_llama_block():
    """GPT-2 (chapter 4) and Llama 3 side by side, bottom (token ids) to top (logits); the parts that change
    are orange, each numbered as the step of the lesson that makes the change."""
    fig, ax = _canvas(9.0, 5.9)
    gpt = [
        ("token ids", False),
        ("token embedding + position embedding", False),
        ("LayerNorm (scale, shift)", False),
        ("multi-head attention (biases)", False),
        ("LayerNorm (scale, shift)", False),
        ("Linear → GELU → Linear (biases)", False),
        ("final LayerNorm → out_head", False),
    ]
    llama = [
        ("token ids", False),
        ("token embedding only   [3]", True),
        ("RMSNorm (weight)   [1]", True),
        ("grouped-query attention + RoPE   [3, 4, 5]", True),
        ("RMSNorm (weight)   [1]", True),
        ("SwiGLU: (SiLU(fc1) · fc2) → fc3   [2, 4]", True),
        ("final RMSNorm → out_head   [1]", True),
    ]
    _block_column(ax, 2.1, "GPT-2 (chapter 4)", gpt)
    _block_column(ax, 6.7, "Llama 3", llama)
    for x in (2.1, 6.7):  # the repeated part of each model
        ax.add_patch(plt.Rectangle((x - 1.5, 1.6), 3.0, 2.74, fill=False, edgecolor=GREY, linestyle="--"))
        ax.text(x + 1.45, 1.62, "× n_layers", ha="right", va="bottom", fontsize=7, color=GREY)
    for k, y in enumerate((1.17, 1.89, 2.61, 3.33, 4.05, 4.77)):
        _arrow(ax, (3.45, y), (5.35, y), color=ORANGE if k else GREY, style="-|>")
    notes = "[1] RMSNorm  [2] SiLU/SwiGLU  [3] RoPE  [4] no biases  [5] grouped-query attention"
    ax.text(4.5, 0.05, notes, ha="center", va="bottom", fontsize=8, color=ORANGE)
    _show(fig)


def layernorm_vs_rmsnorm(values=(2.0, 3.5, 1.0, 4.0, 2.5, 3.0)):
    """Step 1: the same vector after LayerNorm (shifted to mean 0, then scaled to variance 1) and after
    RMSNorm (only scaled, to a root mean square of 1: the mean is not removed and the signs stay)."""
    x = list(values)
    n = len(x)
    mean = sum(x) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in x) / n)
    rms = math.sqrt(sum(v * v for v in x) / n)
    rows = [
        ("input x", x, GREY),
        ("LayerNorm: (x − mean) / std", [(v - mean) / std for v in x], BLUE),
        ("RMSNorm: x / rms", [v / rms for v in x], ORANGE),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(9.0, 2.6), sharey=True)
    for ax, (title, vals, color) in zip(axes, rows, strict=True):
        ax.bar(range(n), vals, color=color, alpha=0.6)
        ax.axhline(0, color=GREY, lw=0.8)
        m = sum(vals) / n
        ax.axhline(m, color=RED, lw=1, linestyle="--")
        ax.text(n - 0.5, m, f"mean {m:.2f}", color=RED, fontsize=8, ha="right", va="bottom")
        ax.set_title(title, fontsize=9)
        ax.set_xticks(range(n), [f"x{i}" for i in range(n)], fontsize=7)
    axes[0].set_ylabel("value")
    fig.tight_layout()
    _show(fig)


def swiglu_feed_forward(emb_dim=768, hidden_gelu=3072, hidden_swiglu=2048):
    """Step 2: GPT-2's feed-forward network (two linear layers around GELU) beside Llama's SwiGLU (a gate
    fc1 through SiLU, multiplied feature by feature with fc2, then fc3), with their weight counts."""
    fig, ax = _canvas(9.0, 3.8)
    ax.text(2.0, 3.55, "GPT-2: Linear → GELU → Linear", ha="center", fontsize=10, weight="bold")
    _box(ax, 2.0, 0.6, 1.8, 0.4, f"x ({emb_dim})", GREY, fontsize=8)
    _box(ax, 2.0, 1.4, 1.8, 0.4, f"Linear → {hidden_gelu}", BLUE, fontsize=8)
    _box(ax, 2.0, 2.15, 1.8, 0.4, "GELU", BLUE, fontsize=8)
    _box(ax, 2.0, 2.9, 1.8, 0.4, f"Linear → {emb_dim}", BLUE, fontsize=8)
    for y0, y1 in ((0.82, 1.18), (1.62, 1.93), (2.37, 2.68)):
        _arrow(ax, (2.0, y0), (2.0, y1))
    weights = f"{2 * emb_dim * hidden_gelu:,} weights + biases"
    ax.text(2.0, 0.08, weights, ha="center", va="bottom", fontsize=8, color=GREY)
    x0 = 5.9
    ax.text(x0, 3.55, "Llama: SwiGLU", ha="center", fontsize=10, weight="bold")
    _box(ax, x0, 0.6, 1.8, 0.4, f"x ({emb_dim})", GREY, fontsize=8)
    _box(ax, x0 - 1.2, 1.4, 1.8, 0.4, f"fc1 (gate) → {hidden_swiglu}", ORANGE, fontsize=8)
    _box(ax, x0 + 1.2, 1.4, 1.8, 0.4, f"fc2 (up) → {hidden_swiglu}", ORANGE, fontsize=8)
    _box(ax, x0 - 1.2, 2.15, 1.1, 0.4, "SiLU", ORANGE, fontsize=8)
    _box(ax, x0, 2.25, 0.4, 0.4, "×", GREEN, fontsize=11)
    _box(ax, x0, 3.0, 1.8, 0.4, f"fc3 (down) → {emb_dim}", ORANGE, fontsize=8)
    _arrow(ax, (x0, 0.82), (x0 - 1.2, 1.18))
    _arrow(ax, (x0, 0.82), (x0 + 1.2, 1.18))
    _arrow(ax, (x0 - 1.2, 1.62), (x0 - 1.2, 1.93))
    _arrow(ax, (x0 - 0.65, 2.17), (x0 - 0.22, 2.23))
    _arrow(ax, (x0 + 1.2, 1.62), (x0 + 0.2, 2.1))
    _arrow(ax, (x0, 2.47), (x0, 2.78))
    note = "the gate decides,\nfeature by feature,\nhow much of fc2's\nvalue passes"
    ax.text(x0 + 2.45, 2.5, note, fontsize=7, color=GREY, ha="center", va="center")
    weights = f"{3 * emb_dim * hidden_swiglu:,} weights, no biases"
    ax.text(x0, 0.08, weights, ha="center", va="bottom", fontsize=8, color=GREY)
    _show(fig)


def rope_rotation(theta=0.5, positions=(0, 1, 2, 3, 4)):
    """Step 3: RoPE turns one pair of a query's (or key's) features by position × theta; the angle between
    a query at position m and a key at position n is then (m − n) × theta plus their own angle, so the
    attention score sees only how far apart the tokens are."""
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.6))
    ax = axes[0]
    for p in positions:
        a = p * theta
        color = plt.cm.viridis(p / max(positions))
        ax.annotate(
            "",
            xy=(math.cos(a), math.sin(a)),
            xytext=(0, 0),
            arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.5},
        )
        ax.text(1.13 * math.cos(a), 1.13 * math.sin(a), f"pos {p}", fontsize=8, ha="center", va="center")
    ax.add_patch(plt.Circle((0, 0), 1, fill=False, color=GREY, lw=0.6, linestyle=":"))
    ax.set_title("one feature pair of the same vector at positions 0-4:\nturned by position × θ", fontsize=9)
    ax.set_aspect("equal")
    ax.set_xlim(-1.35, 1.35)
    ax.set_ylim(-1.35, 1.35)
    ax.axis("off")
    ax = axes[1]
    for (m, n), color in (((2, 0), BLUE), ((6, 4), ORANGE)):
        for p, style, name in ((m, "-", "query"), (n, "--", "key")):
            a = p * theta + (0.3 if name == "query" else 0.0)
            ax.plot([0, math.cos(a)], [0, math.sin(a)], style, color=color, lw=1.6)
            ax.text(
                1.15 * math.cos(a),
                1.15 * math.sin(a),
                f"{name} @{p}",
                fontsize=7,
                color=color,
                ha="center",
                va="center",
            )
    ax.add_patch(plt.Circle((0, 0), 1, fill=False, color=GREY, lw=0.6, linestyle=":"))
    ax.set_title(
        "query at m, key at n: the angle between them\ndepends on m − n only (2−0 = 6−4)", fontsize=9
    )
    ax.set_aspect("equal")
    ax.set_xlim(-1.4, 1.4)
    ax.set_ylim(-1.4, 1.4)
    ax.axis("off")
    fig.tight_layout()
    _show(fig)


def rope_frequency_scaling(
    inv_freq, scaled_inv_freq, original_context_length, low_freq_factor, high_freq_factor
):
    """Step 3: the wavelength (tokens per full turn, 2π / frequency) of each feature pair before and after
    Llama 3's scaling; the two dashed lines are original_context_length / high_freq_factor and
    original_context_length / low_freq_factor, the edges of the band that is blended."""
    wave = [2 * math.pi / f for f in inv_freq]
    scaled = [2 * math.pi / f for f in scaled_inv_freq]
    fig, ax = plt.subplots(figsize=(8.0, 3.4))
    pairs = range(len(wave))
    ax.plot(pairs, wave, "o-", color=BLUE, ms=3, label="plain RoPE")
    ax.plot(pairs, scaled, "s-", color=ORANGE, ms=3, label="Llama 3 scaling")
    ax.set_yscale("log")
    for value, text in (
        (original_context_length / high_freq_factor, "kept below"),
        (original_context_length / low_freq_factor, "stretched above"),
    ):
        ax.axhline(value, color=GREY, linestyle="--", lw=0.8)
        ax.text(0, value, f" {text}: {value:,.0f} tokens", fontsize=8, color=GREY, va="bottom")
    ax.set_xlabel("feature pair i (0 turns fastest)")
    ax.set_ylabel("wavelength (tokens per turn)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    _show(fig)


def _heads_panel(ax, x0, num_heads, num_kv_groups, title):
    """Query heads on top, the key/value heads they read below, a line from each query head to its pair."""
    group = num_heads // num_kv_groups
    width = 0.34
    qx = [x0 + k * width for k in range(num_heads)]
    span = qx[-1] - qx[0]
    kvx = [
        qx[0] + (span * (k + 0.5) / num_kv_groups if num_kv_groups > 1 else span / 2)
        for k in range(num_kv_groups)
    ]
    if num_kv_groups == num_heads:
        kvx = qx
    colors = [BLUE, ORANGE, GREEN, PURPLE, RED, GREY, BLUE, ORANGE]
    for h, x in enumerate(qx):
        _box(ax, x, 2.4, 0.26, 0.36, f"Q{h}", colors[(h // group) % len(colors)], fontsize=6)
        _arrow(ax, (x, 2.2), (kvx[h // group], 1.18), color=colors[(h // group) % len(colors)], style="-")
    for g, x in enumerate(kvx):
        _box(ax, x, 0.95, 0.3, 0.4, f"K{g}\nV{g}", colors[g % len(colors)], fontsize=6, fill_alpha=0.35)
    ax.text(qx[0] + span / 2, 3.0, title, ha="center", fontsize=9, weight="bold")
    ax.text(
        qx[0] + span / 2,
        0.4,
        f"cache: {num_kv_groups} K/V head(s) per layer",
        ha="center",
        fontsize=7,
        color=GREY,
    )


def grouped_query_attention(num_heads=8, num_kv_groups=2):
    """Step 5: which key/value head each query head reads. Multi-head attention gives every query head its
    own (num_kv_groups = num_heads); grouped-query attention lets a group of num_heads // num_kv_groups
    query heads share one; multi-query attention shares a single one among all heads. The KV cache stores
    only the key/value heads, so it shrinks by num_heads / num_kv_groups."""
    fig, ax = _canvas(9.3, 3.3)
    _heads_panel(ax, 0.35, num_heads, num_heads, "multi-head (GPT-2)")
    _heads_panel(ax, 3.4, num_heads, num_kv_groups, f"grouped-query ({num_kv_groups} groups)")
    _heads_panel(ax, 6.45, num_heads, 1, "multi-query")
    _show(fig)


def kv_cache_memory(sizes, num_tokens):
    """Step 5: KV-cache size in MiB (``sizes``: model name -> (multi-head MiB, grouped-query MiB)) for one
    text of ``num_tokens`` tokens, with the factor grouped-query attention saves."""
    names = list(sizes)
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.8 * len(names)))
    for i, name in enumerate(names):
        mha, gqa = sizes[name]
        ax.barh(i - 0.18, mha, height=0.34, color=GREY, alpha=0.6, label="multi-head" if i == 0 else None)
        ax.barh(
            i + 0.18, gqa, height=0.34, color=ORANGE, alpha=0.7, label="grouped-query" if i == 0 else None
        )
        ax.text(mha, i - 0.18, f" {mha:,.0f} MiB", va="center", fontsize=8)
        ax.text(gqa, i + 0.18, f" {gqa:,.0f} MiB ({mha / gqa:.0f}x less)", va="center", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(m for m, _ in sizes.values()) * 1.35)
    ax.set_xlabel(f"KV cache for one text of {num_tokens:,} tokens, bfloat16 (MiB)")
    ax.legend(loc="lower right", fontsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    _show(fig)


__all__ = [
    "gpt_to_llama_block",
    "layernorm_vs_rmsnorm",
    "swiglu_feed_forward",
    "rope_rotation",
    "rope_frequency_scaling",
    "grouped_query_attention",
    "kv_cache_memory",
]
