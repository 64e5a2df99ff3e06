"""The diagrams of chapter 5 and its bonus notebooks."""

from __future__ import annotations

import matplotlib.pyplot as plt

from shared.diagrams._draw import BLUE, GREEN, GREY, ORANGE, RED, _arrow, _box, _canvas, _show


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


__all__ = [
    "loss_chain",
    "reading_loss_curves",
    "top_k_cutoff",
    "tokens_per_second",
    "checkpoint_layout",
]
