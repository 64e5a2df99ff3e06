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
    for y in (1.17, 1.89, 2.61, 3.33, 4.05, 4.77):
        _arrow(ax, (3.45, y), (5.35, y), color=ORANGE, style="-|>")
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


# ---- Qwen3 (llama_qwen/qwen3.ipynb) and Hugging Face weights (llama_qwen/hf_models.ipynb) ----
# Written by helper Q; only functions are added below, and the names are added to __all__ at the end.


def qwen3_block():
    """Qwen3: a Llama block with RMSNorm on each head's queries and keys (QK-norm), and a feed-forward
    network that is either SwiGLU (dense models) or a mixture of experts (the MoE models)."""
    fig, ax = _canvas(9.0, 4.4)
    x = 2.3
    stack = [
        (0.35, "token embeddings (no position embedding)", GREY),
        (0.95, "RMSNorm", BLUE),
        (1.55, "grouped-query attention (RoPE)", BLUE),
        (2.35, "RMSNorm", BLUE),
        (2.95, "SwiGLU feed-forward  or  mixture of experts", ORANGE),
        (3.75, "... n_layers blocks, final RMSNorm, out_head", GREY),
    ]
    for y, text, color in stack:
        _box(ax, x, y, 3.6, 0.38, text, color=color, fontsize=8.5)
    for (y0, *_), (y1, *_) in zip(stack[:-1], stack[1:], strict=True):
        _arrow(ax, (x, y0 + 0.19), (x, y1 - 0.19))
    ax.text(x + 1.95, 1.9, "+ residual", fontsize=8, color=GREY, va="center")
    ax.text(x + 1.95, 3.3, "+ residual", fontsize=8, color=GREY, va="center")
    # the attention, opened up: QK-norm before RoPE
    ax.plot([x + 1.8, 5.0], [1.55, 1.9], color=GREY, lw=0.8, ls=":")
    ax.text(6.9, 4.15, "inside the attention, per head", ha="center", fontsize=9)
    for i, (name, normed) in enumerate((("W_query", True), ("W_key", True), ("W_value", False))):
        y = 3.55 - 0.75 * i
        _box(ax, 5.5, y, 0.95, 0.36, name, color=BLUE, fontsize=8)
        if normed:
            _box(ax, 6.65, y, 1.05, 0.36, "RMSNorm\n(head_dim)", color=RED, fontsize=7.5)
            _box(ax, 7.75, y, 0.75, 0.36, "RoPE", color=BLUE, fontsize=8)
            _arrow(ax, (5.98, y), (6.12, y))
            _arrow(ax, (7.18, y), (7.37, y))
        else:
            _arrow(ax, (5.98, y), (7.37, y))
        end = 8.13 if normed else 7.37
        _arrow(ax, (end, y - 0.18 if normed else y), (6.2 + 0.6 * i, 1.27), connectionstyle="arc3,rad=-0.15")
    _box(ax, 6.9, 1.05, 3.0, 0.4, "softmax(q k / sqrt(head_dim)) v", color=BLUE, fontsize=8)
    ax.text(
        6.9,
        0.35,
        "new in Qwen3 (red): q_norm and k_norm keep the\nscores q k in a steady range, whatever the weights",
        ha="center",
        fontsize=8,
        color=RED,
    )
    _show(fig)


def moe_layer(num_experts=8, top_k=2, chosen=(2, 5), weights=(0.62, 0.38)):
    """A mixture-of-experts layer for one token: the router scores every expert, the top ``top_k`` run,
    and their outputs are added with the router's (renormalized) weights."""
    fig, ax = _canvas(9.0, 3.6)
    _box(ax, 0.75, 1.8, 1.1, 0.5, "token\nvector x", color=GREY, fontsize=8.5)
    _box(ax, 2.35, 1.8, 1.4, 0.7, "router (gate)\nsoftmax over\nall experts", color=PURPLE, fontsize=8)
    _arrow(ax, (1.3, 1.8), (1.65, 1.8))
    ys = [3.2 - i * 2.8 / (num_experts - 1) for i in range(num_experts)]
    for i, y in enumerate(ys):
        on = i in chosen
        color = ORANGE if on else GREY
        _box(
            ax,
            5.0,
            y,
            1.7,
            0.3,
            f"expert {i} (SwiGLU)",
            color=color,
            fontsize=7.5,
            fill_alpha=0.3 if on else 0.08,
        )
        if on:
            w = weights[list(chosen).index(i)]
            _arrow(ax, (3.05, 1.8), (4.15, y), color=ORANGE, text=None)
            ax.text(
                3.45, (1.8 + y) / 2 + (0.15 if y > 1.8 else -0.25), f"{w:.2f}", fontsize=8.5, color=ORANGE
            )
            _arrow(ax, (5.85, y), (6.95, 1.8), color=ORANGE)
    _box(ax, 7.5, 1.8, 1.0, 0.55, "weighted\nsum", color=GREEN, fontsize=8.5)
    ax.text(
        4.5,
        0.0,
        f"only the top {top_k} of {num_experts} experts compute for this token; "
        "their weights are renormalized to sum to 1",
        ha="center",
        va="bottom",
        fontsize=8,
        color=GREY,
    )
    _show(fig)


def tokens_to_experts(tokens, experts, weights, num_experts):
    """Which experts each token was routed to: one row per token, one column per expert, the router's
    weight in each chosen cell (``experts``/``weights``: (num_tokens, top_k) lists)."""

    import numpy as np

    grid = np.zeros((len(tokens), num_experts))
    for row, (chosen, ws) in enumerate(zip(experts, weights, strict=True)):
        for e, w in zip(chosen, ws, strict=True):
            grid[row, e] = w
    fig, (ax, ax2) = plt.subplots(
        1, 2, figsize=(9.0, 0.35 * len(tokens) + 1.4), gridspec_kw={"width_ratios": (3, 1)}
    )
    ax.imshow(np.ma.masked_equal(grid, 0), cmap="Oranges", vmin=0, vmax=1, aspect="auto")
    ax.set_yticks(range(len(tokens)), [repr(t) for t in tokens], fontsize=8)
    ax.set_xticks(range(num_experts), [str(e) for e in range(num_experts)], fontsize=8)
    ax.set_xlabel("expert")
    for row in range(len(tokens)):
        for e in range(num_experts):
            if grid[row, e] > 0:
                ax.text(e, row, f"{grid[row, e]:.2f}", ha="center", va="center", fontsize=7)
    ax.set_title("router weights of the chosen experts (blank: the expert does not run)", fontsize=9)
    counts = (grid > 0).sum(axis=0)
    ax2.barh(range(num_experts), counts, color=ORANGE)
    ax2.set_yticks(range(num_experts), [str(e) for e in range(num_experts)], fontsize=8)
    ax2.invert_yaxis()
    ax2.set_xlabel("tokens per expert")
    fig.tight_layout()
    _show(fig)


def active_parameters(models):
    """Total and active (used for one token) parameters of each model: ``models`` maps a name to
    (total, active)."""
    fig, ax = plt.subplots(figsize=(8.0, 0.6 * len(models) + 1.2))
    names = list(models)
    totals = [models[n][0] / 1e9 for n in names]
    actives = [models[n][1] / 1e9 for n in names]
    ax.barh(names, totals, color=GREY, alpha=0.4, label="total: stored in memory")
    ax.barh(names, actives, color=ORANGE, label="active: computed for each token")
    for i in range(len(names)):
        ax.text(totals[i], i, f" {totals[i]:.2f}B total", va="center", fontsize=8)
        ax.text(actives[i], i - 0.3, f" {actives[i]:.2f}B active", va="center", fontsize=8, color=ORANGE)
    ax.set_xlabel("parameters (billions)")
    ax.set_xlim(0, max(totals) * 1.25)
    ax.invert_yaxis()
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    _show(fig)


def hf_folder_to_model():
    """Weights in the Hugging Face layout: what each file of a model folder becomes in the course's model."""
    fig, ax = _canvas(9.5, 3.9)
    ax.text(0.15, 3.6, "a model folder (save_pretrained, or a hub repository)", fontsize=9, fontweight="bold")
    files = [
        ("config.json", "model_type, hidden_size, num_key_value_heads, ...", GREEN),
        (
            "model.safetensors",
            "or model-00001-of-0000N.safetensors ...\nwith model.safetensors.index.json",
            BLUE,
        ),
        ("tokenizer.json", "byte-level BPE, the chat's special tokens", ORANGE),
    ]
    targets = [
        ('"qwen3" -> Qwen3Model\nhidden_size -> emb_dim, ...', GREEN),
        ("model.layers.0.self_attn.q_proj.weight\n-> trf_blocks[0].att.W_query.weight", BLUE),
        ("ChatTokenizer: encode, decode,\nformat_chat", ORANGE),
    ]
    for i, ((name, what, color), (target, tcolor)) in enumerate(zip(files, targets, strict=True)):
        y = 2.85 - 1.05 * i
        _box(ax, 1.25, y, 2.0, 0.42, name, color=color, fontsize=8.5, family="monospace")
        ax.text(0.25, y - 0.42, what, fontsize=7, color=GREY, va="center")
        _box(ax, 6.9, y, 4.2, 0.62, target, color=tcolor, fontsize=8)
        _arrow(
            ax,
            (2.3, y),
            (4.75, y),
            text="hf_config_to_ours" if i == 0 else ("hf_key_map" if i == 1 else None),
        )
    ax.text(
        4.75,
        0.05,
        "every tensor's name and shape is checked against the model before anything is copied",
        ha="center",
        fontsize=8,
        color=GREY,
    )
    _show(fig)


def weights_source_order():
    """Where load_hf_model looks for the files of a hub repository name, in order."""
    fig, ax = _canvas(9.5, 2.6)
    steps = [
        ("a folder?\nread it", GREY),
        ("1. huggingface_hub's\ncache", BLUE),
        ("2. the offline mirror\n$LLMFS_DATA_MIRROR/\n<org>--<name>/", GREEN),
        ("3. download from\nthe hub (into\nthe cache)", ORANGE),
        ("none: one line\nthat says what to\ndownload, and where", RED),
    ]
    xs = [0.95 + 1.9 * i for i in range(len(steps))]
    for x, (text, color) in zip(xs, steps, strict=True):
        _box(ax, x, 1.55, 1.6, 0.95, text, color=color, fontsize=8)
    for a, b in zip(xs, xs[1:], strict=False):
        _arrow(ax, (a + 0.82, 1.55), (b - 0.82, 1.55))
    ax.text(
        4.75,
        0.35,
        "each place is tried only when the one before lacks the files; a model downloaded once loads offline",
        ha="center",
        fontsize=8,
        color=GREY,
    )
    _show(fig)


def chat_prompt_tokens(rows):
    """Chat prompts as the model reads them: ``rows`` maps a title to a list of (piece, is_special), the
    special tokens drawn in red, the text in blue, newlines shown as \\n."""
    width = 10.0
    layout, y = [], 0.0  # (x, y, w, text, special) with y counted down from the top
    for title, pieces in rows.items():
        layout.append((0.1, y, None, title, None))
        x, y = 0.1, y + 0.4
        for piece, special in pieces:
            text = piece.replace("\n", "\\n")
            w = 0.075 * len(text) + 0.12
            if x + w > width - 0.1:
                x, y = 0.1, y + 0.36
            layout.append((x, y, w, text, special))
            x += w + 0.05
        y += 0.55
    height = y + 0.1
    fig, ax = _canvas(width, height)
    for x, top, w, text, special in layout:
        if w is None:
            ax.text(x, height - top - 0.1, text, fontsize=9, fontweight="bold", va="top")
        else:
            color = RED if special else BLUE
            _box(
                ax, x + w / 2, height - top - 0.2, w, 0.28, text, color=color, fontsize=7, family="monospace"
            )
    _show(fig)


__all__ += [
    "qwen3_block",
    "moe_layer",
    "tokens_to_experts",
    "active_parameters",
    "hf_folder_to_model",
    "weights_source_order",
    "chat_prompt_tokens",
]
