"""The drawing helpers and the palette every diagram of the course shares."""

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
