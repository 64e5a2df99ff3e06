"""The diagrams of chapters 2 to 4 (and chapter 5's training loop)."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

from shared.diagrams._draw import BLUE, GREEN, GREY, ORANGE, PURPLE, RED, _arrow, _box, _canvas, _show


def text_to_embeddings():
    """Chapter 2: text -> tokens -> token ids -> embedding vectors (+ positions) -> the model's input."""
    fig, ax = _canvas(9.0, 2.6)
    words = ["Your", " journey", " starts"]
    ids = [7120, 7002, 4940]  # GPT-2's ids of these three tokens
    columns = [
        (0.8, "text"),
        (2.6, "tokens"),
        (4.4, "token ids"),
        (6.3, "token embeddings"),
        (8.1, "+ positions"),
    ]
    for x, title in columns:
        ax.text(x, 2.4, title, ha="center", va="center", fontsize=9, weight="bold")
    _box(ax, 0.8, 1.2, 1.3, 1.3, '"Your journey\nstarts ..."', GREY)
    for row, (word, token_id) in enumerate(zip(words, ids, strict=True)):
        y = 1.8 - 0.6 * row
        _box(ax, 2.6, y, 1.2, 0.42, repr(word), ORANGE)
        _box(ax, 4.4, y, 0.9, 0.42, str(token_id), GREEN)
        for k in range(4):  # a vector of emb_dim numbers, drawn as 4 cells
            _box(ax, 5.85 + 0.3 * k, y, 0.26, 0.36, "", BLUE, fill_alpha=0.15 + 0.15 * ((row + k) % 3))
        for k in range(4):
            _box(ax, 7.65 + 0.3 * k, y, 0.26, 0.36, "", PURPLE, fill_alpha=0.15 + 0.15 * ((2 * row + k) % 3))
        _arrow(ax, (3.25, y), (3.9, y))
        _arrow(ax, (4.9, y), (5.65, y))
        _arrow(ax, (6.95, y), (7.45, y))
        ax.text(7.2, y + 0.28, f"pos {row}", ha="center", fontsize=7, color=GREY)
    _arrow(ax, (1.5, 1.2), (1.95, 1.2), text="split")
    ax.text(4.4, 0.2, "look up in the vocabulary", ha="center", fontsize=8, color=GREY)
    ax.text(6.3, 0.2, "row id of the embedding table", ha="center", fontsize=8, color=GREY)
    ax.text(8.1, 0.2, "add the row of each position", ha="center", fontsize=8, color=GREY)
    _show(fig)


def sliding_window(ids=(40, 367, 2885, 1464, 1807, 3619, 402, 271, 10899, 2138), max_length=4, stride=4):
    """Chapter 2: windows of ``max_length`` ids, ``stride`` apart; each target is its input shifted by one."""
    ids = list(ids)
    starts = list(range(0, len(ids) - max_length, stride))
    cell = 0.62
    width = cell * len(ids) + 1.6
    height = 0.9 + 1.05 * len(starts)
    fig, ax = _canvas(width, height)
    x0 = 1.4
    for i, token_id in enumerate(ids):  # the token stream on top
        _box(ax, x0 + cell * i, height - 0.35, cell - 0.06, 0.4, str(token_id), GREY, fontsize=8)
    ax.text(0.1, height - 0.35, "token ids", va="center", fontsize=9, weight="bold")
    for row, start in enumerate(starts):
        y = height - 0.95 - 1.05 * row
        ax.text(0.1, y, f"input {row + 1}", va="center", fontsize=9, color=BLUE)
        ax.text(0.1, y - 0.42, f"target {row + 1}", va="center", fontsize=9, color=ORANGE)
        for k in range(max_length):
            _box(ax, x0 + cell * (start + k), y, cell - 0.06, 0.36, str(ids[start + k]), BLUE, fontsize=8)
            _box(
                ax,
                x0 + cell * (start + k + 1),
                y - 0.42,
                cell - 0.06,
                0.36,
                str(ids[start + k + 1]),
                ORANGE,
                8,
            )
    ax.text(
        width - 0.1,
        0.08,
        f"max_length = {max_length}, stride = {stride}",
        ha="right",
        va="bottom",
        fontsize=8,
        color=GREY,
    )
    _show(fig)


def qkv_projections():
    """Chapter 3: each input vector is projected three times; queries meet keys, the weights mix values."""
    fig, ax = _canvas(9.0, 3.0)
    _box(ax, 0.7, 1.5, 1.0, 0.6, "input x\n(T, d_in)", GREY)
    rows = [
        (2.45, "W_q", "queries Q", ORANGE),
        (1.5, "W_k", "keys K", GREEN),
        (0.55, "W_v", "values V", PURPLE),
    ]
    for y, weight, name, color in rows:
        _arrow(ax, (1.2, 1.5), (1.95, y))
        _box(ax, 2.4, y, 0.8, 0.5, f"× {weight}", color)
        _arrow(ax, (2.8, y), (3.3, y))
        _box(ax, 3.9, y, 1.1, 0.5, f"{name}\n(T, d_out)", color, fontsize=8)
    _arrow(ax, (4.45, 2.45), (5.15, 2.0))
    _arrow(ax, (4.45, 1.5), (5.15, 1.85))
    _box(ax, 5.8, 1.95, 1.2, 0.6, "scores\nQ Kᵀ / √d_k\n(T, T)", BLUE, fontsize=8)
    _arrow(ax, (6.4, 1.95), (6.85, 1.95))
    ax.text(6.6, 2.3, "softmax", ha="center", fontsize=8, color=GREY)
    _box(ax, 7.35, 1.95, 1.0, 0.55, "weights\n(T, T)", BLUE, fontsize=8)
    _arrow(ax, (4.45, 0.55), (7.6, 0.55))
    _arrow(ax, (7.35, 1.65), (7.6, 0.85))
    _box(ax, 8.3, 0.6, 1.1, 0.6, "context Z\nweights @ V\n(T, d_out)", RED, fontsize=8)
    ax.text(3.9, 2.82, "what each token looks for / offers / hands over", ha="center", fontsize=8, color=GREY)
    _show(fig)


def causal_mask(tokens=("Your", "journey", "starts", "with", "one", "step")):
    """Chapter 3: which keys each query may see (lower triangle) and which are hidden (the future)."""
    n = len(tokens)
    fig, ax = plt.subplots(figsize=(3.6, 3.3))
    for i in range(n):
        for j in range(n):
            hidden = j > i
            ax.add_patch(
                plt.Rectangle(
                    (j, i), 1, 1, facecolor=GREY if hidden else BLUE, alpha=0.15 if hidden else 0.45
                )
            )
            ax.text(j + 0.5, i + 0.5, "−∞" if hidden else "✓", ha="center", va="center", fontsize=9)
    ax.set_xlim(0, n)
    ax.set_ylim(n, 0)
    ax.set_xticks([k + 0.5 for k in range(n)], tokens, rotation=45, fontsize=8)
    ax.set_yticks([k + 0.5 for k in range(n)], tokens, fontsize=8)
    ax.set_xlabel("key (token attended to)", fontsize=8)
    ax.set_ylabel("query token", fontsize=8)
    ax.set_title("causal mask: ✓ seen, −∞ hidden", fontsize=9)
    ax.tick_params(length=0)
    fig.tight_layout()
    _show(fig)


def split_and_merge_heads(num_heads=2, head_dim=3, num_tokens=4):
    """Chapter 3: one projection of d_out = heads x head_dim features, cut into heads, attended, put back."""
    fig, ax = _canvas(9.0, 2.9)
    colors = [ORANGE, GREEN, PURPLE, RED]
    cw, ch = 0.2, 0.2

    def matrix(x, y, cols_per_color, title):
        for t in range(num_tokens):
            for h, cols in enumerate(cols_per_color):
                for k in range(cols):
                    xi = x + cw * (sum(cols_per_color[:h]) + k) + 0.06 * h
                    ax.add_patch(
                        plt.Rectangle((xi, y - ch * t), cw, ch, facecolor=colors[h], alpha=0.45, ec="w")
                    )
        ax.text(x, y + 0.35, title, fontsize=8, va="bottom")

    d_out = num_heads * head_dim
    matrix(0.2, 2.0, [head_dim] * num_heads, f"queries (T={num_tokens}, d_out={d_out})")
    _arrow(ax, (1.75, 1.7), (2.45, 1.7), text="view, transpose")
    for h in range(num_heads):  # one (T, head_dim) matrix per head
        matrix(2.7 + 1.1 * h, 2.0, [0] * h + [head_dim], f"head {h + 1}")
    ax.text(
        3.25,
        0.75,
        f"(b, heads, T, head_dim={head_dim}):\neach head attends on its own slice",
        fontsize=8,
        ha="center",
        color=GREY,
    )
    _arrow(ax, (5.0, 1.7), (5.7, 1.7), text="attention")
    for h in range(num_heads):
        matrix(5.9 + 1.1 * h, 2.0, [0] * h + [head_dim], f"context {h + 1}")
    _arrow(ax, (6.9, 1.3), (7.25, 0.95))
    matrix(7.3, 0.95, [head_dim] * num_heads, "")
    ax.text(
        7.2,
        0.55,
        "transpose back, reshape:\nheads side by side (T, d_out) → out_proj",
        fontsize=8,
        ha="right",
        va="center",
        color=GREY,
    )
    _show(fig)


def gpt_architecture(n_layers=12):
    """Chapter 4: token ids in, logits out; the transformer block, repeated, with its two shortcuts."""
    fig, ax = _canvas(9.0, 4.9)
    # left: the whole model, bottom to top
    stack = [
        (0.35, 0.4, "token ids (batch, T)", GREY),
        (0.95, 0.4, "token embedding + positional embedding", BLUE),
        (1.5, 0.4, "dropout", GREY),
        (2.4, 0.8, f"transformer block × {n_layers}", RED),
        (3.3, 0.4, "final LayerNorm", GREEN),
        (3.85, 0.4, "linear output layer (out_head)", BLUE),
        (4.45, 0.4, "logits (batch, T, vocab_size)", GREY),
    ]
    for y, h, text, color in stack:
        _box(ax, 2.0, y, 3.4, h, text, color)
    for (y0, h0, *_), (y1, h1, *_) in zip(stack[:-1], stack[1:], strict=True):
        _arrow(ax, (2.0, y0 + h0 / 2), (2.0, y1 - h1 / 2))
    ax.plot([3.72, 5.0], [2.8, 4.75], color=RED, lw=0.8, ls=":")
    ax.plot([3.72, 5.0], [2.0, 0.1], color=RED, lw=0.8, ls=":")
    # right: one block, bottom to top; the shortcuts carry x around each branch to a "+"
    ax.add_patch(FancyBboxPatch((5.0, 0.1), 3.8, 4.65, boxstyle="round,pad=0.02", fill=False, ec=RED, lw=1.0))
    x = 6.4
    layers = [
        (0.75, "LayerNorm 1", GREEN),
        (1.3, "masked multi-head attention", ORANGE),
        (1.85, "dropout", GREY),
        (2.8, "LayerNorm 2", GREEN),
        (3.35, "feed-forward (Linear, GELU, Linear)", PURPLE),
        (3.9, "dropout", GREY),
    ]
    for y, text, color in layers:
        _box(ax, x, y, 2.5, 0.36, text, color, fontsize=8)
    for (y0, *_), (y1, *_) in [
        (layers[0], layers[1]),
        (layers[1], layers[2]),
        (layers[3], layers[4]),
        (layers[4], layers[5]),
    ]:
        _arrow(ax, (x, y0 + 0.18), (x, y1 - 0.18))
    _arrow(ax, (x, 0.15), (x, 0.57))
    ax.text(x - 0.1, 0.2, "x", ha="right", fontsize=9)
    for y_branch, y_last, y_plus, y_next in [(0.38, 1.85, 2.3, 2.62), (2.52, 3.9, 4.35, 4.72)]:
        ax.add_patch(plt.Circle((x, y_plus), 0.13, fill=False, ec=RED))
        ax.text(x, y_plus, "+", ha="center", va="center", fontsize=11, color=RED)
        _arrow(ax, (x, y_last + 0.18), (x, y_plus - 0.13))
        _arrow(ax, (x, y_plus + 0.13), (x, y_next))
        ax.plot([x, 7.9, 7.9], [y_branch, y_branch, y_plus], color=RED, lw=1.2)
        _arrow(ax, (7.9, y_plus), (x + 0.13, y_plus), color=RED)
        ax.text(
            8.1,
            (y_branch + y_plus) / 2,
            "shortcut",
            rotation=90,
            fontsize=8,
            color=RED,
            ha="center",
            va="center",
        )
    _show(fig)


def training_loop():
    """Chapter 5: one step of train_model_simple, repeated for every batch, and what happens on the side."""
    fig, ax = _canvas(9.0, 3.0)
    steps = [
        (0.9, "batch\ninputs, targets", GREY),
        (2.6, "GPTModel\n(inputs)", BLUE),
        (4.3, "logits\n(batch, tokens, vocab)", BLUE),
        (6.0, "cross-entropy\nvs targets", RED),
        (7.9, "loss.backward()\ngradients", ORANGE),
    ]
    y = 2.1
    for x, text, color in steps:
        _box(ax, x, y, 1.45, 0.7, text, color, fontsize=8)
    for (x0, _, _), (x1, _, _) in zip(steps, steps[1:], strict=False):
        _arrow(ax, (x0 + 0.75, y), (x1 - 0.75, y))
    _box(ax, 4.3, 0.75, 2.2, 0.6, "optimizer.step()\nupdate the weights", GREEN, fontsize=8)
    _arrow(ax, (7.9, y - 0.38), (5.45, 0.8), connectionstyle="arc3,rad=-0.2")
    _arrow(ax, (3.15, 0.8), (0.9, y - 0.38), connectionstyle="arc3,rad=-0.2")
    ax.text(1.7, 0.75, "next batch", ha="center", va="center", fontsize=8, color=GREY)
    ax.text(
        7.7,
        0.35,
        "every eval_freq steps: training and\nvalidation loss, dropout off\nevery epoch: a text sample",
        ha="center",
        va="center",
        fontsize=8,
        color=GREY,
    )
    ax.text(0.9, 2.75, "optimizer.zero_grad() first", ha="center", va="center", fontsize=7, color=GREY)


__all__ = [
    "text_to_embeddings",
    "sliding_window",
    "qkv_projections",
    "causal_mask",
    "split_and_merge_heads",
    "gpt_architecture",
    "training_loop",
]
