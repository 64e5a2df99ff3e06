"""Diagrams of chapter 7's bonus on preference tuning with DPO (ch07_instruct/dpo.ipynb)."""

import math

import matplotlib.pyplot as plt

from shared.diagrams._draw import BLUE, GREEN, GREY, ORANGE, PURPLE, RED, _arrow, _box, _canvas, _show


def preference_masks(
    prompt=("P1", "P2", "P3"), chosen=("C1", "C2", "C3"), rejected=("R1", "R2", "R3", "R4", "R5")
):
    """custom_collate_fn_dpo on one pair: both sequences start with the same prompt, get one end-of-text
    token and are padded to the longest sequence of the batch (+ 1); the mask is True on the answer and its
    first end-of-text only, so the log-probability compares the answers and nothing else."""
    seqs = {"chosen": list(prompt) + list(chosen), "rejected": list(prompt) + list(rejected)}
    width = max(len(s) for s in seqs.values()) + 1
    cell, x0, row_h = 0.62, 2.0, 0.42
    fig, ax = _canvas(x0 + cell * width + 0.3, 3.5)
    ax.text(0.1, 3.25, "one pair, padded and masked", fontsize=10, weight="bold", va="center")
    y = 2.7
    for name, seq in seqs.items():
        color = BLUE if name == "chosen" else RED
        padded = seq + ["E"] * (width - len(seq))
        ax.text(0.1, y, name, va="center", fontsize=9, color=color)
        ax.text(0.1, y - row_h, f"{name}_mask", va="center", fontsize=9, color=GREY)
        for k, token in enumerate(padded):
            if k < len(prompt):
                box_color, counted = GREY, False  # the prompt: the same in both, says nothing
            elif k < len(seq):
                box_color, counted = color, True
            elif k == len(seq):
                box_color, counted = GREEN, True  # the answer's end
            else:
                box_color, counted = GREY, False  # padding
            x = x0 + cell * k + cell / 2
            _box(ax, x, y, cell - 0.08, row_h - 0.1, token, box_color, fontsize=8)
            _box(
                ax,
                x,
                y - row_h,
                cell - 0.08,
                row_h - 0.1,
                "True" if counted else "False",
                box_color if counted else GREY,
                fontsize=7,
                fill_alpha=0.3 if counted else 0.05,
            )
        y -= 1.15
    ax.text(
        0.1,
        0.2,
        "P: prompt and response header (masked)   E: end-of-text, the first one counts, the rest is padding",
        fontsize=8,
        color=GREY,
        va="center",
    )
    _show(fig)


def dpo_data_flow():
    """One DPO step: the same two sequences go through the policy (trained) and through a frozen copy of
    it, the reference; four average log-probabilities give two rewards, their difference the margin, and
    the loss -log sigmoid(margin) sends gradients into the policy only."""
    fig, ax = _canvas(9.4, 3.9)
    ax.text(4.7, 3.72, "one DPO step", ha="center", fontsize=10, weight="bold")
    _box(ax, 0.95, 2.45, 1.5, 0.6, "prompt +\nchosen answer", BLUE, fontsize=8)
    _box(ax, 0.95, 1.05, 1.5, 0.6, "prompt +\nrejected answer", RED, fontsize=8)
    _box(ax, 3.1, 2.45, 1.6, 0.7, "policy model\n(trained)", ORANGE, fontsize=8, fill_alpha=0.3)
    _box(ax, 3.1, 1.05, 1.6, 0.7, "reference model\n(frozen copy)", GREY, fontsize=8)
    for y in (2.45, 1.05):
        _arrow(ax, (1.72, y), (2.28, 2.45 if y == 2.45 else 1.05))
    _arrow(ax, (1.72, 2.3), (2.28, 1.2), color=BLUE)
    _arrow(ax, (1.72, 1.2), (2.28, 2.3), color=RED)
    _box(ax, 5.45, 2.45, 1.9, 0.7, "log p(chosen)\nlog p(rejected)", ORANGE, fontsize=8, fill_alpha=0.08)
    _box(
        ax, 5.45, 1.05, 1.9, 0.7, "log p_ref(chosen)\nlog p_ref(rejected)", GREY, fontsize=8, fill_alpha=0.08
    )
    _arrow(ax, (3.92, 2.45), (4.48, 2.45))
    _arrow(ax, (3.92, 1.05), (4.48, 1.05))
    _box(
        ax,
        7.85,
        1.75,
        2.6,
        1.5,
        "rewards: beta x (log p - log p_ref)\n\nmargin = chosen - rejected reward"
        "\n\nloss = -log sigmoid(margin)",
        PURPLE,
        fontsize=8,
    )
    _arrow(ax, (6.42, 2.4), (6.52, 2.1))
    _arrow(ax, (6.42, 1.1), (6.52, 1.4))
    _arrow(ax, (7.85, 2.52), (3.3, 2.82), color=ORANGE, connectionstyle="arc3,rad=0.25")
    ax.text(5.6, 3.38, "gradients flow into the policy only", ha="center", fontsize=8, color=ORANGE)
    _show(fig)


def dpo_loss_curve(betas=(0.1, 0.5, 1.0)):
    """The DPO loss of one pair, -log sigmoid(beta * x), against x: how much more the policy prefers the
    chosen answer than the reference does (the difference of the two log-ratios)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.0))
    xs = [i / 10 for i in range(-100, 101)]
    for beta, color in zip(betas, (BLUE, ORANGE, GREEN), strict=False):
        ys = [math.log1p(math.exp(-beta * x)) for x in xs]  # -log sigmoid(beta x), exactly
        ax.plot(xs, ys, color=color, label=f"beta = {beta}")
    ax.axvline(0, color=GREY, lw=0.8, ls=":")
    ax.annotate(
        "policy = reference: ln 2", (0, math.log(2)), (2.5, 2.2), fontsize=8, arrowprops={"arrowstyle": "->"}
    )
    ax.set_xlabel("(log p_c - log p_ref_c) - (log p_r - log p_ref_r)")
    ax.set_ylabel("DPO loss of the pair")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _show(fig)


def dpo_training_curves(tracking):
    """The loss (left) and the reward margin (right) while DPO trains: each step's training batch (faint)
    and the records on the validation pairs (dots), from train_model_dpo_simple's ``tracking``."""
    fig, (ax_loss, ax_margin) = plt.subplots(1, 2, figsize=(9.0, 3.0))
    steps = range(len(tracking["batch_losses"]))
    panels = (
        (ax_loss, "batch_losses", "val_losses", "DPO loss", BLUE),
        (ax_margin, "batch_margins", "val_reward_margins", "reward margin (chosen - rejected)", ORANGE),
    )
    for ax, batch_key, val_key, label, color in panels:
        ax.plot(steps, tracking[batch_key], color=color, alpha=0.35, label="training batch")
        ax.plot(tracking["steps"], tracking[val_key], "o-", color=color, label="validation pairs")
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    ax_loss.axhline(math.log(2), color=GREY, lw=0.8, ls=":")
    ax_margin.axhline(0, color=GREY, lw=0.8, ls=":")
    fig.tight_layout()
    _show(fig)


__all__ = ["preference_masks", "dpo_data_flow", "dpo_loss_curve", "dpo_training_curves"]
