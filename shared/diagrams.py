"""The course's own teaching diagrams, drawn with matplotlib (never the book's images).

A notebook cell calls one function, e.g. ``diagrams.sliding_window()``; the figure is stored in the
notebook as an output, so it shows in JupyterLab, in Colab and on a repository web page without running
anything. Every diagram uses the same small palette and box style as the chapter plots (matplotlib's
default colours), and draws only what the text next to it explains.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

# matplotlib's default colour cycle, the colours of the course's plots
BLUE, ORANGE, GREEN, RED, PURPLE, GREY = "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#7f7f7f"


def _canvas(width, height):
    """A figure whose data coordinates are inches: (0, 0) bottom left, (width, height) top right."""
    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    fig.subplots_adjust(0, 0, 1, 1)
    return fig, ax


def _box(ax, x, y, w, h, text, color=BLUE, fontsize=9, fill_alpha=0.15, **text_kw):
    """A rounded box centred at (x, y) with ``text`` in it."""
    ax.add_patch(
        FancyBboxPatch(
            (x - w / 2, y - h / 2),
            w,
            h,
            boxstyle="round,pad=0.02,rounding_size=0.06",
            facecolor=color,
            edgecolor=color,
            alpha=fill_alpha,
        )
    )
    ax.add_patch(
        FancyBboxPatch(
            (x - w / 2, y - h / 2),
            w,
            h,
            boxstyle="round,pad=0.02,rounding_size=0.06",
            fill=False,
            edgecolor=color,
        )
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, **text_kw)


def _arrow(ax, start, end, color=GREY, text=None, style="-|>", connectionstyle="arc3", **text_kw):
    ax.add_patch(
        FancyArrowPatch(
            start,
            end,
            arrowstyle=style,
            mutation_scale=12,
            color=color,
            lw=1.2,
            connectionstyle=connectionstyle,
        )
    )
    if text:
        xm, ym = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
        ax.text(xm, ym + 0.12, text, ha="center", va="bottom", fontsize=8, color=GREY, **text_kw)


def _show(fig):
    plt.show()
    plt.close(fig)


# --- chapter 5 and its bonus notebooks ---


def loss_chain():
    """Chapter 5.1.2: from the scores of one position to the loss, step by step (what cross_entropy does)."""
    fig, ax = _canvas(10.0, 2.2)
    steps = [
        ("logits\n(one row of\n50,257 scores)", BLUE),
        ("softmax:\nprobabilities\n(sum to 1)", BLUE),
        ("the target's\nprobability\ne.g. 0.0001", ORANGE),
        ("log:\n-9.5", ORANGE),
        ("mean over all\npositions:\n-10.79", GREEN),
        ("negated:\nthe loss\n10.79", RED),
    ]
    xs = [0.85 + i * 1.66 for i in range(len(steps))]
    for x, (text, color) in zip(xs, steps, strict=True):
        _box(ax, x, 1.2, 1.3, 0.95, text, color=color, fontsize=8.5)
    for a, b in zip(xs, xs[1:], strict=False):
        _arrow(ax, (a + 0.67, 1.2), (b - 0.67, 1.2))
    ax.annotate(
        "",
        xy=(xs[-1] + 0.6, 0.45),
        xytext=(xs[1] - 0.6, 0.45),
        arrowprops={"arrowstyle": "-", "color": GREY, "lw": 1},
    )
    ax.text(
        (xs[1] + xs[-1]) / 2,
        0.3,
        "F.cross_entropy(logits, targets) does these steps in one call, from the logits",
        ha="center",
        va="top",
        fontsize=8.5,
        color=GREY,
    )
    _show(fig)


def reading_loss_curves():
    """Chapter 5.2: how to read a training run's two loss curves (a sketch, not a measurement)."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.5, 3.0))
    t = np.linspace(0, 10, 200)
    train = 3.5 + 7.5 * np.exp(-t / 2.2) - 0.12 * t
    val = 6.2 + 4.8 * np.exp(-t / 1.6)
    ax.plot(t, train, color=BLUE, label="training loss")
    ax.plot(t, val, color=ORANGE, linestyle="-.", label="validation loss")
    ax.axvspan(0, 2.2, color=GREEN, alpha=0.08)
    ax.text(1.1, 3.2, "both fall:\nthe model learns\nwhat carries over", ha="center", va="bottom", fontsize=8)
    ax.annotate(
        "",
        xy=(9.0, train[180]),
        xytext=(9.0, val[180]),
        arrowprops={"arrowstyle": "<->", "color": RED, "lw": 1.2},
    )
    ax.text(
        8.85,
        (train[180] + val[180]) / 2,
        "the gap:\noverfitting",
        ha="right",
        va="center",
        fontsize=8,
        color=RED,
    )
    ax.text(
        5.0, 7.4, "validation flattens: more of the same\ntext teaches little that carries over", fontsize=8
    )
    ax.set_xlabel("epochs (a sketch)")
    ax.set_ylabel("loss")
    ax.set_yticks([])
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    _show(fig)


def top_k_cutoff(logits=(4.51, 0.89, -1.90, 6.75, 1.63, -1.62, -1.89, 6.28, 1.79), k=3):
    """Chapter 5.3.2: the scores, the k kept, the rest at minus infinity, and the probabilities after."""
    import torch

    words = ["closer", "every", "effort", "forward", "inches", "moves", "pizza", "toward", "you"]
    scores = torch.tensor(logits)
    kth = torch.topk(scores, k).values[-1]
    kept = scores >= kth
    probs = torch.softmax(torch.where(kept, scores, torch.tensor(float("-inf"))), dim=0)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9.0, 2.8))
    colors = [BLUE if keep else GREY for keep in kept.tolist()]
    ax1.bar(words, scores.tolist(), color=colors)
    ax1.axhline(kth.item(), color=RED, linestyle=":", lw=1)
    ax1.text(
        8.4, kth.item() - 0.25, f"k-th best score (k = {k})", ha="right", va="top", fontsize=8, color=RED
    )
    ax1.set_title(f"scores: the top {k} kept, the rest set to -inf (grey)", fontsize=9)
    ax2.bar(words, probs.tolist(), color=colors)
    for i, p in enumerate(probs.tolist()):
        if p > 0:
            ax2.text(i, p + 0.01, f"{p:.2f}", ha="center", fontsize=8)
    ax2.set_title("probabilities after the softmax: 0 outside the top k", fontsize=9)
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", rotation=90, labelsize=8)
    fig.tight_layout()
    _show(fig)


def tokens_per_second(speeds, bound):
    """Chapter 5's fast generation: measured tokens per second of each way of generating (a dict), against
    the bound the memory sets for float32 weights (``bound``) and for bfloat16 weights (twice that)."""
    fig, ax = plt.subplots(figsize=(7.0, 2.8))
    names = list(speeds)
    ax.barh(names, [speeds[n] for n in names], color=[GREY, BLUE, GREEN, ORANGE][: len(names)])
    ax.axvline(bound, color=RED, linestyle="--", lw=1)
    ax.text(bound, -0.6, "memory bound,\nfloat32 weights ", color=RED, fontsize=8, ha="right", va="bottom")
    if any("bfloat16" in n for n in names):
        ax.axvline(2 * bound, color=RED, linestyle=":", lw=1)
        ax.text(2 * bound, -0.6, "bfloat16 ", color=RED, fontsize=8, ha="right", va="bottom")
    for i, n in enumerate(names):
        ax.text(
            speeds[n],
            i,
            f" {speeds[n]:.1f}" if speeds[n] < 10 else f" {speeds[n]:.0f}",
            va="center",
            fontsize=8,
        )
    ax.set_ylim(len(names) - 0.5, -1.3)  # room above the bars for the labels
    ax.set_xlabel("tokens per second (measured, batch 1)")
    fig.tight_layout()
    _show(fig)


def checkpoint_layout():
    """Checkpoints bonus: a run's checkpoint folder, and the order in which a save writes its files."""
    fig, ax = _canvas(9.5, 3.0)
    ax.text(0.2, 2.75, "checkpoints/", fontsize=9, family="monospace", fontweight="bold")
    rows = [
        ("step-000040/", "an older one, complete", GREY),
        ("step-000050/", "model.safetensors,\ntraining_state.pt", BLUE),
        ("latest", 'holds "step-000050"', GREEN),
    ]
    for i, (name, what, color) in enumerate(rows):
        y = 2.3 - 0.55 * i
        _box(ax, 1.35, y, 1.9, 0.42, name, color=color, fontsize=8.5, family="monospace")
        ax.text(2.45, y, what, va="center", fontsize=8)
    order = [
        ("1. weights ->\nmodel.safetensors", BLUE),
        ("2. optimizer, step,\nlosses, generators ->\ntraining_state.pt", BLUE),
        ("3. the folder's name\n-> latest", GREEN),
    ]
    for i, (text, color) in enumerate(order):
        _box(ax, 6.0 + i * 1.35 - 0.7, 2.05, 1.25, 0.9, text, color=color, fontsize=7.5)
    for i in range(2):
        x = 6.0 + i * 1.35 - 0.7
        _arrow(ax, (x + 0.63, 2.05), (x + 0.72, 2.05))
    ax.text(
        6.65,
        0.75,
        "each file: written to a temporary name, then renamed into place\n"
        "(a rename is atomic: the old complete file or the new one, never half)\n"
        "a crash before step 3 leaves 'latest' naming the previous checkpoint",
        ha="center",
        va="center",
        fontsize=8,
        color=GREY,
    )
    _show(fig)


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


def spam_classifier(n_layers=12):
    """Chapter 6: the GPT with a two-class head, what is frozen, what trains, why the last token decides."""
    fig, ax = _canvas(9.0, 4.6)
    # left: the model, bottom to top; grey = frozen, coloured = trained
    stack = [
        (0.3, 0.36, "token ids of a message, padded with 50256", GREY, 0.08),
        (0.85, 0.4, "token + positional embeddings (frozen)", GREY, 0.15),
        (1.55, 0.6, f"transformer blocks 1 to {n_layers - 1} (frozen)", GREY, 0.15),
        (2.3, 0.4, f"transformer block {n_layers} (trained)", RED, 0.15),
        (2.9, 0.4, "final LayerNorm (trained)", GREEN, 0.15),
        (3.5, 0.4, "new out_head: emb_dim -> 2 (trained)", BLUE, 0.3),
        (4.15, 0.4, "2 scores per position", GREY, 0.08),
    ]
    for y, h, text, color, alpha in stack:
        _box(ax, 2.2, y, 3.8, h, text, color, fill_alpha=alpha)
    for (y0, h0, *_), (y1, h1, *_) in zip(stack[:-1], stack[1:], strict=True):
        _arrow(ax, (2.2, y0 + h0 / 2), (2.2, y1 - h1 / 2))
    ax.text(4.25, 3.5, "was: emb_dim -> 50,257", fontsize=8, color=GREY, va="center")
    # right: the causal mask; only the last row has seen every token
    tokens = ["Do", " you", " have", " time"]
    x0, y0, cell = 6.0, 0.9, 0.55
    n = len(tokens)
    for row in range(n):
        for col in range(n):
            seen = col <= row
            last = row == n - 1
            color = ORANGE if last and seen else (BLUE if seen else "white")
            ax.add_patch(
                plt.Rectangle(
                    (x0 + col * cell, y0 + (n - 1 - row) * cell),
                    cell,
                    cell,
                    facecolor=color,
                    alpha=0.35 if seen else 1.0,
                    edgecolor=GREY,
                )
            )
        ax.text(
            x0 - 0.08, y0 + (n - 1 - row) * cell + cell / 2, tokens[row], ha="right", va="center", fontsize=8
        )
    for col, token in enumerate(tokens):
        ax.text(x0 + col * cell + cell / 2, y0 + n * cell + 0.08, token, ha="center", va="bottom", fontsize=8)
    ax.text(
        x0 + n * cell / 2,
        y0 + n * cell + 0.45,
        "which tokens each position attends to",
        ha="center",
        fontsize=9,
    )
    ax.text(
        x0 + n * cell / 2,
        y0 - 0.3,
        "the last position has seen the whole message:\nits 2 scores decide spam or not spam",
        ha="center",
        va="top",
        fontsize=8,
        color=ORANGE,
    )
    _arrow(ax, (4.1, 4.15), (5.4, 4.15), color=ORANGE)
    ax.text(5.45, 4.15, "keep the last position's 2 scores", fontsize=8, color=ORANGE, va="center")
    _show(fig)


def padding_and_masking(batch=((0, 1, 2, 3, 4), (5, 6), (7, 8, 9)), pad="eos", ignore="-100"):
    """custom_collate_fn on a toy batch: each entry gets one end-of-text token, is padded with more to the
    longest entry (+ 1), and split into inputs (all but the last token) and targets (all but the first);
    target padding after the first end-of-text becomes -100, which the loss ignores."""
    width_tokens = max(len(ids) for ids in batch) + 1
    cell = 0.62
    x0 = 1.5
    row_h = 0.45
    height = 0.7 + len(batch) * 3 * row_h + 0.3
    fig, ax = _canvas(x0 + cell * width_tokens + 0.3, height)
    y = height - 0.35
    ax.text(
        x0, y, "one row per entry: inputs, and targets shifted by one", fontsize=9, weight="bold", va="center"
    )
    y -= 0.5
    for ids in batch:
        padded = list(map(str, ids)) + [pad] * (width_tokens - len(ids))
        inputs, targets = padded[:-1], padded[1:]
        ax.text(0.1, y, "inputs", va="center", fontsize=9, color=BLUE)
        ax.text(0.1, y - row_h, "targets", va="center", fontsize=9, color=ORANGE)
        for k, token in enumerate(inputs):
            color = GREEN if token == pad else BLUE
            _box(ax, x0 + cell * k + cell / 2, y, cell - 0.08, row_h - 0.1, token, color, fontsize=8)
        for k, token in enumerate(targets):
            position = k + 1  # index in the padded entry
            if token != pad:
                label, color = token, ORANGE
            elif position == len(ids):
                label, color = pad, GREEN  # the end-of-text the model must learn to write
            else:
                label, color = ignore, GREY  # padding: left out of the loss
            _box(ax, x0 + cell * k + cell / 2, y - row_h, cell - 0.08, row_h - 0.1, label, color, fontsize=8)
        y -= 3 * row_h
    ax.text(
        0.1,
        0.12,
        "green: end-of-text (50256), learned once; grey: ignored by the loss",
        fontsize=8,
        color=GREY,
        va="bottom",
    )
    _show(fig)


# --- chapters 6 and 7, appendix E ---


def _stages(title, stages, width=9.0):
    """Three numbered stages side by side, each a coloured header over a list of steps (with sections)."""
    fig, ax = _canvas(width, 2.9)
    ax.text(width / 2, 2.7, title, ha="center", va="center", fontsize=10, weight="bold")
    col = width / len(stages)
    for k, (name, steps, color) in enumerate(stages):
        x = col * k + col / 2
        _box(ax, x, 2.2, col - 0.5, 0.45, f"stage {k + 1}: {name}", color, fontsize=9, fill_alpha=0.3)
        for j, step in enumerate(steps):
            _box(ax, x, 1.55 - j * 0.5, col - 0.7, 0.38, step, color, fontsize=8, fill_alpha=0.08)
        if k:
            _arrow(ax, (col * k - 0.22, 2.2), (col * k + 0.22, 2.2))
    _show(fig)


def classification_stages():
    """Chapter 6: the three stages of classification fine-tuning, with the sections that do each step."""
    _stages(
        "classification fine-tuning in three stages",
        [
            (
                "the data set",
                ["6.2 download, balance, split", "6.3 pad to one length", "6.3 data loaders"],
                BLUE,
            ),
            (
                "the model",
                ["6.4 load pretrained GPT-2", "6.5 new 2-class head, freeze", "6.6 loss and accuracy"],
                ORANGE,
            ),
            (
                "fine-tune and use",
                ["6.7 train, evaluate", "6.8 classify new messages", "6.8 save and reload"],
                GREEN,
            ),
        ],
    )


def spam_data_pipeline(text="WIN cash now!", ids=(37620, 5003, 783, 0), label=1, max_length=8, pad=50256):
    """Chapter 6: one row of the CSV file on its way to a training example: the message becomes GPT-2 token
    ids, which are padded with end-of-text tokens (50256) to one length; the label becomes a class id."""
    fig, ax = _canvas(9.0, 2.9)
    _box(ax, 1.1, 2.3, 1.9, 0.6, f"CSV row\nLabel: {label}  Text:\n{text!r}", GREY, fontsize=8)
    _box(ax, 1.1, 0.8, 1.9, 0.5, f"label {label} (spam)\n-> class id {label}", RED, fontsize=8)
    _arrow(ax, (1.1, 1.95), (1.1, 1.1))
    _arrow(ax, (2.1, 2.3), (2.75, 2.3), text="encode")
    cell = 0.72
    tokens = [*ids, *([pad] * (max_length - len(ids)))]
    for k, token in enumerate(tokens):
        color = BLUE if k < len(ids) else GREEN
        _box(ax, 3.2 + k * cell, 2.3, cell - 0.08, 0.42, str(token), color, fontsize=7)
    ax.text(3.2 - cell / 2, 2.6, "the message's token ids", fontsize=7, color=BLUE, va="bottom")
    ax.text(3.2 + (len(ids) - 0.5) * cell, 2.6, "padding (end-of-text)", fontsize=7, color=GREEN, va="bottom")
    ax.text(
        2.85,
        1.65,
        f"every message padded (or truncated) to max_length,\nthe longest training message:"
        f" {max_length} here, 120 in the chapter",
        fontsize=8,
        color=GREY,
        va="center",
    )
    _box(
        ax,
        5.7,
        0.8,
        4.6,
        0.55,
        f"one example: (token ids of length {max_length}, label {label})",
        PURPLE,
        fontsize=9,
    )
    _arrow(ax, (7.3, 2.05), (7.3, 1.1))
    _arrow(ax, (2.1, 0.8), (3.4, 0.8))
    ax.text(
        5.7,
        0.25,
        "batches of 8 examples: inputs (8, max_length), labels (8,)",
        ha="center",
        fontsize=8,
        color=GREY,
    )
    _show(fig)


def last_token_attention(tokens=("WIN", " cash", " now", "!", "<eot>", "<eot>")):
    """Chapter 6: through the causal mask the last position (even a padding token) has attended to every
    earlier token, so its output can stand for the whole message; the first position saw one token."""
    n = len(tokens)
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    for row in range(n):
        for col in range(n):
            seen = col <= row
            color = "white"
            if seen:
                color = ORANGE if row == n - 1 else (RED if row == 0 else BLUE)
            ax.add_patch(
                plt.Rectangle((col, row), 1, 1, facecolor=color, alpha=0.45 if seen else 1.0, edgecolor=GREY)
            )
    ax.set_xlim(0, n)
    ax.set_ylim(n, 0)
    ax.set_xticks([k + 0.5 for k in range(n)], tokens, fontsize=8)
    ax.set_yticks([k + 0.5 for k in range(n)], tokens, fontsize=8)
    ax.set_xlabel("tokens attended to", fontsize=8)
    ax.set_ylabel("position", fontsize=8)
    ax.tick_params(length=0)
    ax.text(
        n + 0.15,
        n - 0.5,
        "last position: has seen\nthe whole message ->\nits 2 scores decide",
        fontsize=8,
        color=ORANGE,
        va="center",
    )
    ax.text(n + 0.15, 0.5, "first position: one token\n(exercise 6.3)", fontsize=8, color=RED, va="center")
    ax.set_title("padding comes last, so the last row still covers the message", fontsize=9)
    fig.subplots_adjust(left=0.12, right=0.68, top=0.9, bottom=0.14)
    _show(fig)


def lora_update(d_in=768, d_out=768, rank=16, alpha=16):
    """Appendix E: a frozen weight W (d_in, d_out) and the LoRA update A B beside it, scaled by alpha / rank;
    the layer computes x W + (alpha / rank) x A B, and A B can be folded into W after training."""
    fig, ax = _canvas(9.0, 3.4)
    ax.text(0.5, 1.7, "x\n(…, d_in)", ha="center", va="center", fontsize=9)
    # W: a big square
    ax.add_patch(plt.Rectangle((1.4, 0.5), 2.2, 2.2, facecolor=GREY, alpha=0.25, edgecolor=GREY))
    ax.text(
        2.5,
        1.6,
        f"W\n({d_in}, {d_out})\nfrozen\n{d_in * d_out:,} weights",
        ha="center",
        va="center",
        fontsize=9,
    )
    ax.text(3.95, 1.6, "+", ha="center", va="center", fontsize=18)
    # A: tall and thin, B: short and wide
    ax.add_patch(plt.Rectangle((4.4, 0.5), 0.35, 2.2, facecolor=ORANGE, alpha=0.35, edgecolor=ORANGE))
    ax.text(4.57, 0.3, f"A ({d_in}, {rank})", ha="center", va="center", fontsize=8, color=ORANGE)
    ax.text(4.98, 1.6, "·", ha="center", va="center", fontsize=18)
    ax.add_patch(plt.Rectangle((5.2, 1.43), 2.2, 0.35, facecolor=ORANGE, alpha=0.35, edgecolor=ORANGE))
    ax.text(6.3, 2.0, f"B ({rank}, {d_out}), starts at 0", ha="center", va="center", fontsize=8, color=ORANGE)
    ax.text(
        6.3,
        1.05,
        f"scaled by alpha / rank = {alpha}/{rank}\n{rank * (d_in + d_out):,} trained numbers",
        ha="center",
        va="center",
        fontsize=8,
        color=ORANGE,
    )
    ax.text(
        4.5,
        3.15,
        "a LoRA layer computes  x W + (alpha / rank) · x A B",
        ha="center",
        va="center",
        fontsize=10,
        weight="bold",
    )
    ax.text(
        8.25,
        1.6,
        "after training:\nW + (alpha/rank) A B\nin one matrix\n(merge_lora)",
        ha="center",
        va="center",
        fontsize=8,
        color=GREEN,
    )
    _show(fig)


def lora_in_block():
    """Appendix E: where LinearWithLoRA sits: every nn.Linear of each transformer block (query, key, value,
    output projection, both feed-forward layers) and the output head; the rest stays frozen as it was."""
    fig, ax = _canvas(9.0, 4.4)
    lora = ORANGE
    stack = [
        (0.35, "LayerNorm 1 (frozen)", GREY),
        (1.0, None, None),
        (1.75, "LayerNorm 2 (frozen)", GREY),
        (2.4, None, None),
    ]
    for y, text, color in stack:
        if text:
            _box(ax, 2.3, y, 3.2, 0.38, text, color, fontsize=8)
    for k, name in enumerate(["W_query", "W_key", "W_value"]):
        _box(ax, 1.1 + k * 1.05, 1.0, 0.95, 0.4, name, lora, fontsize=8)
    _box(ax, 4.35, 1.0, 0.95, 0.4, "out_proj", lora, fontsize=8)
    ax.text(3.7, 1.35, "attention", fontsize=8, color=GREY, ha="center")
    _box(ax, 1.2, 2.4, 1.2, 0.4, "Linear 1", lora, fontsize=8)
    _box(ax, 2.35, 2.4, 0.8, 0.4, "GELU", GREY, fontsize=8)
    _box(ax, 3.5, 2.4, 1.2, 0.4, "Linear 2", lora, fontsize=8)
    ax.text(4.3, 2.75, "feed forward", fontsize=8, color=GREY, ha="center")
    for y0, y1 in ((0.55, 0.78), (1.22, 1.55), (1.95, 2.18)):
        _arrow(ax, (2.3, y0), (2.3, y1))
    _box(ax, 2.3, 3.45, 3.2, 0.4, "final LayerNorm, then out_head (LoRA too)", GREY, fontsize=8)
    _arrow(ax, (2.3, 2.62), (2.3, 3.23))
    ax.text(4.55, 3.2, "x 12 blocks (GPT-2 124M)", fontsize=8, color=GREY, ha="center")
    ax.add_patch(plt.Rectangle((0.45, 0.1), 4.6, 2.95, fill=False, edgecolor=GREY, linestyle="--"))
    ax.text(0.5, 4.1, "a transformer block with LoRA", fontsize=10, weight="bold", va="center")
    # right: inside one orange box
    _box(ax, 7.1, 3.5, 3.0, 0.5, "LinearWithLoRA", lora, fontsize=9, fill_alpha=0.3)
    _box(ax, 6.3, 2.45, 1.3, 0.6, "linear\nx W + b\n(frozen)", GREY, fontsize=8)
    _box(ax, 7.9, 2.45, 1.3, 0.6, "lora\n(alpha/rank) x A B\n(trained)", lora, fontsize=8)
    _box(ax, 7.1, 1.25, 0.6, 0.4, "+", GREEN, fontsize=11)
    _arrow(ax, (6.3, 2.13), (6.95, 1.45))
    _arrow(ax, (7.9, 2.13), (7.25, 1.45))
    _arrow(ax, (7.1, 3.23), (6.4, 2.77))
    _arrow(ax, (7.1, 3.23), (7.8, 2.77))
    ax.text(
        7.1,
        0.65,
        "same input, outputs added:\nthe block's code is unchanged",
        ha="center",
        va="center",
        fontsize=8,
        color=GREY,
    )
    _arrow(ax, (5.0, 1.0), (5.6, 3.3), color=lora, connectionstyle="arc3,rad=-0.2")
    _show(fig)


def trainable_parameters(counts, title="trainable parameters"):
    """Appendix E: horizontal bars of trainable parameter counts, ``counts`` a dict label -> number, each bar
    labelled with its number and its share of the first one."""
    labels, values = list(counts), list(counts.values())
    fig, ax = plt.subplots(figsize=(8.0, 0.5 + 0.55 * len(values)))
    colors = [GREY, BLUE, ORANGE, GREEN, PURPLE][: len(values)]
    ax.barh(range(len(values)), values, color=colors, alpha=0.6)
    ax.set_yticks(range(len(values)), labels, fontsize=8)
    ax.invert_yaxis()
    for k, value in enumerate(values):
        share = f" ({value / values[0]:.1%})" if k and values[0] else ""
        ax.text(value, k, f" {value:,}{share}", va="center", fontsize=8)
    ax.set_xlim(0, max(values) * 1.35)
    ax.set_xticks([])
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    _show(fig)


def instruction_stages():
    """Chapter 7: the three stages of instruction fine-tuning, with the sections that do each step."""
    _stages(
        "instruction fine-tuning in three stages",
        [
            (
                "the data set",
                ["7.2 entries in a prompt style", "7.3 pad, shift, mask", "7.4 data loaders"],
                BLUE,
            ),
            (
                "fine-tuning",
                ["7.5 load pretrained GPT-2", "7.6 train on the entries", "7.6 watch the losses"],
                ORANGE,
            ),
            (
                "evaluation",
                ["7.7 answer the test entries", "7.8 score: judge or offline", "7.9 where next"],
                GREEN,
            ),
        ],
    )


def prompt_styles():
    """Chapter 7: the same entry in the Alpaca prompt style (the chapter's) and in Phi-3's (exercise 7.1)."""
    fig, ax = _canvas(9.0, 3.3)
    alpaca = (
        "Below is an instruction that describes a task.\nWrite a response that appropriately completes"
        " the request.\n\n### Instruction:\nIdentify the correct spelling of the\nfollowing word.\n\n"
        "### Input:\nOcassion\n\n### Response:\nThe correct spelling is 'Occasion.'"
    )
    phi3 = (
        "<|user|>\nIdentify the correct spelling of the\nfollowing word.\nOcassion\n<|assistant|>:\n"
        "The correct spelling is 'Occasion.'"
    )
    for x, name, text, color in (
        (2.4, "Alpaca (the chapter)", alpaca, BLUE),
        (6.9, "Phi-3 (exercise 7.1)", phi3, ORANGE),
    ):
        ax.add_patch(
            FancyBboxPatch(
                (x - 2.1, 0.2),
                4.2,
                2.6,
                boxstyle="round,pad=0.02",
                facecolor=color,
                alpha=0.08,
                edgecolor=color,
            )
        )
        ax.text(x, 3.05, name, ha="center", va="center", fontsize=10, weight="bold", color=color)
        ax.text(x - 2.0, 2.7, text, ha="left", va="top", fontsize=7.5, family="monospace")
    ax.text(6.9, 0.45, "shorter: about 30% fewer tokens", ha="center", fontsize=8, color=GREY)
    _show(fig)


def collate_steps():
    """Chapter 7: what custom_collate_fn does to one entry of a batch, step by step."""
    fig, ax = _canvas(9.0, 3.1)
    rows = [
        ("entry (token ids)", ["5", "6"], [BLUE, BLUE]),
        (
            "1. add end-of-text, pad to\n    the longest entry + 1",
            ["5", "6", "E", "E", "E", "E"],
            [BLUE, BLUE] + [GREEN] * 4,
        ),
        ("2. shift: inputs", ["5", "6", "E", "E", "E"], [BLUE, BLUE] + [GREEN] * 3),
        ("    targets (next token)", ["6", "E", "E", "E", "E"], [ORANGE] + [GREEN] * 4),
        ("3. mask: targets", ["6", "E", "-100", "-100", "-100"], [ORANGE, GREEN] + [GREY] * 3),
    ]
    for r, (label, tokens, colors) in enumerate(rows):
        y = 2.75 - r * 0.55
        ax.text(0.1, y, label, va="center", fontsize=8)
        for k, (token, color) in enumerate(zip(tokens, colors, strict=True)):
            _box(ax, 3.0 + k * 0.62, y, 0.54, 0.36, token, color, fontsize=8)
    ax.text(
        6.85,
        1.65,
        "E = end-of-text (50256)\n\nthe first E in the targets stays:\nthe model learns to end its answer\n\n"
        "-100: cross-entropy skips it\n\nthen: truncate to allowed_max_length,\n"
        "stack the rows, move to the device",
        fontsize=7.5,
        va="center",
        color=GREY,
    )
    _show(fig)


def evaluation_path():
    """Chapter 7: from the fine-tuned model to a score: answers to the test entries, saved, then graded by an
    LLM judge (Ollama) or, without a server, by ROUGE-L and token F1 against the expected answers."""
    fig, ax = _canvas(9.0, 2.8)
    _box(ax, 1.0, 1.4, 1.5, 0.7, "test entries\n(held out)", GREY, fontsize=8)
    _box(ax, 3.0, 1.4, 1.7, 0.7, "fine-tuned model\ngenerate_test_responses", BLUE, fontsize=8)
    _box(ax, 5.0, 1.4, 1.5, 0.7, "answers saved\nas JSON", PURPLE, fontsize=8)
    _box(
        ax,
        7.6,
        2.15,
        2.4,
        0.75,
        "(a) LLM judge via Ollama\nscore 0-100 per answer,\naverage",
        ORANGE,
        fontsize=8,
    )
    _box(
        ax,
        7.6,
        0.65,
        2.4,
        0.75,
        "(b) offline, no server\nROUGE-L and token F1\nvs the expected answer",
        GREEN,
        fontsize=8,
    )
    _arrow(ax, (1.75, 1.4), (2.15, 1.4))
    _arrow(ax, (3.85, 1.4), (4.25, 1.4))
    _arrow(ax, (5.75, 1.55), (6.4, 2.1))
    _arrow(ax, (5.75, 1.25), (6.4, 0.7))
    ax.text(4.5, 2.6, "evaluating the answers", ha="center", fontsize=10, weight="bold")
    _show(fig)
