"""The diagrams of appendix A, the PyTorch primer."""

from __future__ import annotations

import matplotlib.pyplot as plt

from shared.diagrams._draw import BLUE, GREEN, GREY, ORANGE, PURPLE, RED, _arrow, _box, _canvas, _show


def logistic_regression_graph(x1=1.1, w1=2.2, b=0.0, y=1.0):
    """Appendix A.3-A.4: the computation graph of a one-weight logistic regression, with the value each
    node computes on the way forward and the gradient of the loss that flows back along each edge.

    The numbers are computed here with PyTorch's autograd, from the inputs given."""
    import torch
    import torch.nn.functional as F

    x1_t = torch.tensor([x1])
    w1_t = torch.tensor([w1], requires_grad=True)
    b_t = torch.tensor([b], requires_grad=True)
    u = x1_t * w1_t
    z = u + b_t
    a = torch.sigmoid(z)
    loss = F.binary_cross_entropy(a, torch.tensor([y]))
    for t in (u, z, a):
        t.retain_grad()
    loss.backward()

    def val(t):
        return f"{t.item():.3g}"

    def grad(t):
        return f"{t.grad.item():.3g}"

    fig, ax = _canvas(10.0, 3.8)
    leaves = {  # name: (x, y, text, colour)
        "x1": (0.7, 3.0, f"input x1\n{x1}", BLUE),
        "w1": (0.7, 1.9, f"weight w1\n{w1}", ORANGE),
        "b": (0.7, 0.8, f"bias b\n{b}", ORANGE),
    }
    for x, yy, text, color in leaves.values():
        _box(ax, x, yy, 1.1, 0.7, text, color=color, fontsize=8.5)
    ops = {  # name: (x, y, text, colour)
        "mul": (2.9, 2.45, f"u = x1 · w1\n{val(u)}", GREEN),
        "add": (4.8, 1.6, f"z = u + b\n{val(z)}", GREEN),
        "sig": (6.7, 1.6, f"a = σ(z)\n{val(a)}", GREEN),
        "loss": (8.85, 1.6, f"L = BCE(a, y)\n{val(loss)}", RED),
    }
    for x, yy, text, color in ops.values():
        _box(ax, x, yy, 1.35, 0.75, text, color=color, fontsize=8.5)
    _box(ax, 8.85, 3.0, 1.1, 0.6, f"target y\n{y}", color=BLUE, fontsize=8.5)

    def edge(start, end, gradient, dy=-0.28, dx=0.0):
        _arrow(ax, start, end)
        xm, ym = (start[0] + end[0]) / 2 + dx, (start[1] + end[1]) / 2
        ax.text(xm, ym + dy, gradient, ha="center", va="center", fontsize=8, color=RED)

    edge((1.27, 2.9), (2.2, 2.55), "")
    edge((1.27, 1.95), (2.2, 2.3), f"∂L/∂w1 = {w1_t.grad.item():.3g}", dy=-0.32, dx=0.25)
    edge((3.6, 2.3), (4.1, 1.8), f"∂L/∂u = {grad(u)}", dy=0.32)
    edge((1.27, 0.8), (4.1, 1.45), f"∂L/∂b = {b_t.grad.item():.3g}", dy=-0.35)
    edge((5.5, 1.6), (6.0, 1.6), f"∂L/∂z\n= {grad(z)}", dy=-0.55)
    edge((7.4, 1.6), (8.15, 1.6), f"∂L/∂a\n= {grad(a)}", dy=-0.55)
    _arrow(ax, (8.85, 2.68), (8.85, 2.0))
    ax.text(
        5.0,
        0.2,
        "forward pass: the value each node computes (black); backward pass: the gradient of the loss "
        "with respect to it (red)",
        ha="center",
        fontsize=8.5,
        color=GREY,
    )
    ax.text(0.7, 0.25, "trainable (orange)", ha="center", fontsize=8, color=ORANGE)
    _show(fig)


def toy_data(X_train, y_train, X_test, y_test):
    """Appendix A.6: the toy data set, two features per example and two classes, training and test."""
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    for label, color in ((0, BLUE), (1, ORANGE)):
        train = X_train[y_train == label]
        test = X_test[y_test == label]
        ax.scatter(train[:, 0], train[:, 1], s=60, color=color, label=f"class {label}, training")
        ax.scatter(
            test[:, 0],
            test[:, 1],
            s=90,
            facecolors="none",
            edgecolors=color,
            lw=2,
            marker="s",
            label=f"class {label}, test",
        )
    for i, (a, b) in enumerate(X_train.tolist()):
        ax.annotate(f"{i}", (a, b), xytext=(6, 4), textcoords="offset points", fontsize=8, color=GREY)
    ax.set_xlabel("feature 1")
    ax.set_ylabel("feature 2")
    ax.set_title("the toy data: 5 training examples (numbered) and 2 test examples", fontsize=9)
    ax.legend(fontsize=8, loc="center")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _show(fig)


def network_layers(model):
    """Appendix A.5: the layers of a NeuralNetwork (its ``layers``, an nn.Sequential) from input to
    logits, with the shape and the number of parameters of each."""
    import torch

    layers = list(model.layers)
    linears = [m for m in layers if isinstance(m, torch.nn.Linear)]
    width = 1.2 + 1.45 * (len(layers) + 2)
    fig, ax = _canvas(width, 2.6)
    x = 0.85
    _box(ax, x, 1.5, 1.2, 0.9, f"input\n{linears[0].in_features}\nfeatures", color=BLUE, fontsize=8.5)
    total = 0
    for layer in layers:
        _arrow(ax, (x + 0.62, 1.5), (x + 0.83, 1.5))
        x += 1.45
        if isinstance(layer, torch.nn.Linear):
            n = sum(p.numel() for p in layer.parameters())
            total += n
            text = f"Linear\n{layer.in_features} → {layer.out_features}"
            _box(ax, x, 1.5, 1.2, 0.9, text, color=ORANGE, fontsize=8.5)
            ax.text(
                x,
                0.82,
                f"{layer.out_features}×{layer.in_features} + {layer.out_features}\n= {n:,}",
                ha="center",
                va="top",
                fontsize=8,
                color=ORANGE,
            )
        else:
            _box(ax, x, 1.5, 1.2, 0.9, f"{type(layer).__name__}\n(no\nparameters)", color=GREEN, fontsize=8.5)
    _arrow(ax, (x + 0.62, 1.5), (x + 0.83, 1.5))
    x += 1.45
    _box(ax, x, 1.5, 1.2, 0.9, f"logits\n{linears[-1].out_features}\nscores", color=PURPLE, fontsize=8.5)
    ax.text(
        width / 2,
        2.35,
        f"{type(model).__name__}: {total:,} parameters (weights and biases of the linear layers)",
        ha="center",
        fontsize=9,
    )
    _show(fig)


def training_losses(losses, batches_per_epoch):
    """Appendix A.7: the training loss after each optimizer step, the epochs marked."""
    fig, ax = plt.subplots(figsize=(5.5, 2.8))
    steps = range(1, len(losses) + 1)
    ax.plot(steps, losses, marker="o", color=BLUE)
    n_epochs = -(-len(losses) // batches_per_epoch)
    for epoch in range(1, n_epochs):
        ax.axvline(epoch * batches_per_epoch + 0.5, color=GREY, linestyle=":", lw=1)
    for epoch in range(n_epochs):
        middle = epoch * batches_per_epoch + (batches_per_epoch + 1) / 2
        ax.text(middle, max(losses) * 1.02, f"epoch {epoch + 1}", ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, max(losses) * 1.15)
    ax.set_xticks(list(steps))
    ax.set_xlabel("optimizer step (one batch each)")
    ax.set_ylabel("training loss (batch)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _show(fig)


def data_parallel(n_gpus=2):
    """Appendix A.9.3: distributed data parallel, one process per GPU, each with a copy of the model and
    its own share of the batches; the gradients are averaged before every update."""
    fig, ax = _canvas(9.0, 3.2)
    _box(
        ax, 1.0, 1.6, 1.4, 1.0, "one epoch's\nbatches,\nsplit between\nthe processes", color=BLUE, fontsize=8
    )
    ys = [2.5 - i * (1.8 / max(n_gpus - 1, 1)) for i in range(n_gpus)]
    for i, yy in enumerate(ys):
        _arrow(ax, (1.72, 1.6), (2.55, yy), text=None)
        _box(
            ax, 3.4, yy, 1.6, 0.6, f"GPU {i}: copy of the model\nforward + backward", color=ORANGE, fontsize=8
        )
        _arrow(ax, (4.22, yy), (5.05, 1.6))
    _box(ax, 5.9, 1.6, 1.6, 0.9, "all-reduce:\naverage the\ngradients", color=GREEN, fontsize=8.5)
    _arrow(ax, (6.72, 1.6), (7.35, 1.6))
    _box(
        ax,
        8.15,
        1.6,
        1.4,
        0.9,
        "every copy takes\nthe same step:\nthe copies stay\nidentical",
        color=RED,
        fontsize=8,
    )
    ax.text(
        4.5,
        0.15,
        "torchrun starts one process per GPU; the global batch is processes × batch size",
        ha="center",
        fontsize=8.5,
        color=GREY,
    )
    _show(fig)
