"""Chapter 7's teaching picture, drawn with the course's helpers and colours (see shared/diagrams.py)."""

from __future__ import annotations

from shared.diagrams import BLUE, GREEN, GREY, ORANGE, _box, _canvas, _show


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
