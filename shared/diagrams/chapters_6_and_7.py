"""The diagrams of chapters 6 and 7 and appendix E."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

from shared.diagrams._draw import BLUE, GREEN, GREY, ORANGE, PURPLE, RED, _arrow, _box, _canvas, _show


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


__all__ = [
    "spam_classifier",
    "padding_and_masking",
    "classification_stages",
    "spam_data_pipeline",
    "last_token_attention",
    "lora_update",
    "lora_in_block",
    "trainable_parameters",
    "instruction_stages",
    "prompt_styles",
    "collate_steps",
    "evaluation_path",
]
