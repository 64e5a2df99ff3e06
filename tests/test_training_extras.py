"""Appendix D's train_model: schedule, clipping, accumulation, mixed precision, optimizer, resuming."""

import math

import pytest
import torch
from torch.utils.data import DataLoader

from ch04_gpt.gpt import GPTModel
from ch05_pretraining.pretraining import create_train_val_loaders
from ch05_pretraining.training_extras import (
    create_optimizer,
    distributed_loader,
    resolve_precision,
    train_model,
    warmup_cosine_lr,
)
from shared.data import fetch, gpt2_encoding

CFG = {
    "vocab_size": 50257,
    "context_length": 32,
    "emb_dim": 32,
    "n_heads": 2,
    "n_layers": 1,
    "drop_rate": 0.0,
    "qkv_bias": False,
}


@pytest.fixture(scope="module")
def loaders():
    text = fetch("the-verdict.txt").read_text(encoding="utf-8")[:3000]
    return create_train_val_loaders(text, context_length=CFG["context_length"], batch_size=2)


def new_model(seed=123, **cfg):
    torch.manual_seed(seed)
    return GPTModel({**CFG, **cfg})


def run(model, optimizer, train_loader, val_loader, device="cpu", **kwargs):
    options = {"n_epochs": 1, "eval_freq": 1, "eval_iter": 1, "warmup_steps": 2, "progress": False}
    options.update(kwargs)
    return train_model(
        model, train_loader, val_loader, optimizer, device, start_context="Every effort",
        tokenizer=gpt2_encoding(), **options,
    )  # fmt: skip


def test_schedule_at_known_steps():
    schedule = {"peak_lr": 1e-3, "total_steps": 110, "warmup_steps": 10, "initial_lr": 1e-4, "min_lr": 1e-5}
    assert warmup_cosine_lr(0, **schedule) == 1e-4  # warmup starts at initial_lr
    assert warmup_cosine_lr(5, **schedule) == pytest.approx(1e-4 + 5 * 9e-5)  # straight line
    assert warmup_cosine_lr(10, **schedule) == pytest.approx(1e-3)  # the peak, where the decay starts
    assert warmup_cosine_lr(60, **schedule) == pytest.approx((1e-3 + 1e-5) / 2)  # half way down the cosine
    assert warmup_cosine_lr(110, **schedule) == pytest.approx(1e-5)  # the floor
    assert warmup_cosine_lr(500, **schedule) == pytest.approx(1e-5)  # and it stays there
    lrs = [warmup_cosine_lr(s, **schedule) for s in range(110)]
    assert all(b > a for a, b in zip(lrs[:10], lrs[1:11], strict=True))
    assert all(b < a for a, b in zip(lrs[10:-1], lrs[11:], strict=True))


def test_train_model_follows_the_schedule(loaders):
    model = new_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    _, _, _, lrs = run(model, optimizer, *loaders, max_steps=5, warmup_steps=3, initial_lr=1e-4, min_lr=1e-5)
    total = len(loaders[0])
    expected = [warmup_cosine_lr(s, 1e-3, total, 3, 1e-4, 1e-5) for s in range(5)]
    assert lrs == expected


def test_clipping_bounds_every_step_after_the_warmup(loaders):
    def weights_after(steps, **kwargs):
        model = new_model()
        # SGD at a constant learning rate of 0.1: a step moves the weights by 0.1 x the (clipped) gradient
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        run(model, optimizer, *loaders, max_steps=steps, warmup_steps=1, initial_lr=0.1, min_lr=0.1, **kwargs)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    start = torch.cat([p.detach().flatten() for p in new_model().parameters()])
    norms = []
    after_one, after_two = weights_after(1, max_norm=0.01), weights_after(2, max_norm=0.01, grad_norms=norms)
    assert len(norms) == 2 and min(norms) > 0.01  # recorded before clipping
    # step 0 is in the warmup: not clipped; step 1 is clipped to a gradient norm of 0.01
    assert torch.linalg.vector_norm(after_one - start).item() == pytest.approx(0.1 * norms[0], rel=1e-3)
    assert torch.linalg.vector_norm(after_two - after_one).item() == pytest.approx(0.1 * 0.01, rel=1e-3)
    unclipped = weights_after(2, max_norm=None)
    assert torch.linalg.vector_norm(unclipped - after_one).item() == pytest.approx(0.1 * norms[1], rel=1e-3)


def test_accumulation_equals_a_larger_batch(loaders):
    dataset = loaders[0].dataset
    small = DataLoader(dataset, batch_size=2, shuffle=False, drop_last=True)
    large = DataLoader(dataset, batch_size=4, shuffle=False, drop_last=True)
    results = []
    for loader, accum in ((small, 2), (large, 1)):
        model = new_model()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
        norms = []
        losses = run(
            model, optimizer, loader, loaders[1], max_steps=3, grad_accum_steps=accum, grad_norms=norms
        )
        results.append((model, losses, norms))
    (model_a, losses_a, norms_a), (model_b, losses_b, norms_b) = results
    assert losses_a[1] == pytest.approx(losses_b[1], abs=1e-5)  # validation losses
    assert losses_a[2] == losses_b[2]  # tokens seen
    assert norms_a == pytest.approx(norms_b, rel=1e-4)
    for a, b in zip(model_a.parameters(), model_b.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_bf16_trains_and_stays_close_to_fp32(loaders):
    losses = {}
    for precision in ("fp32", "bf16"):
        model = new_model()
        optimizer = create_optimizer(model, lr=3e-3)
        losses[precision] = run(model, optimizer, *loaders, max_steps=8, precision=precision)[1]
    assert losses["bf16"][-1] < losses["bf16"][0] - 0.05  # it learns (validation losses)
    assert max(abs(a - b) for a, b in zip(losses["fp32"], losses["bf16"], strict=True)) < 0.01


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cuda_trains_close_to_fp32(loaders, precision):
    """bf16 autocast, and fp16 with its gradient scaler (the path of GPUs without bf16, e.g. a T4)."""
    losses = {}
    for name in ("fp32", precision):
        model = new_model().cuda()
        optimizer = create_optimizer(model, lr=3e-3)
        losses[name] = run(model, optimizer, *loaders, device="cuda", max_steps=8, precision=name)[1]
    assert losses[precision][-1] < losses[precision][0] - 0.05  # it learns (validation losses)
    assert max(abs(a - b) for a, b in zip(losses["fp32"], losses[precision], strict=True)) < 0.02


def test_precision_choices():
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("auto", "cpu") in ("bf16", "fp32")
    with pytest.raises(ValueError, match="for CUDA GPUs"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("int8", "cpu")


def test_optimizer_decays_only_the_matrices():
    model = new_model(tie_weights=True)
    optimizer = create_optimizer(model, lr=1e-3, weight_decay=0.1)
    decayed, kept = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and kept["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decayed["params"]) and all(p.dim() == 1 for p in kept["params"])
    assert len(decayed["params"]) + len(kept["params"]) == len(list(model.parameters()))  # tied: once
    assert decayed["fused"] is True


def test_resume_is_exact(loaders, tmp_path):
    def fresh():
        model = new_model(drop_rate=0.2)  # dropout on: the random generators must be restored too
        return model, create_optimizer(model, lr=1e-3)

    model, optimizer = fresh()
    full = run(model, optimizer, *loaders, n_epochs=2, max_steps=30, eval_freq=4)
    half_dir = tmp_path / "ckpt"
    model, optimizer = fresh()
    run(model, optimizer, *loaders, n_epochs=2, max_steps=13, eval_freq=4, checkpoint_dir=half_dir)
    model, optimizer = fresh()
    resumed = run(
        model,
        optimizer,
        *loaders,
        n_epochs=2,
        max_steps=30,
        eval_freq=4,
        checkpoint_dir=half_dir,
        resume=True,
    )
    assert len(loaders[0]) < 30  # the resumed run crosses an epoch boundary
    assert resumed == full


def test_errors_name_the_fix(loaders):
    model = new_model()
    optimizer = create_optimizer(model, lr=1e-3)
    with pytest.raises(ValueError, match="warmup_steps must be a positive integer"):
        run(model, optimizer, *loaders, warmup_steps=0)
    with pytest.raises(ValueError, match="fewer than grad_accum_steps"):
        run(model, optimizer, *loaders, grad_accum_steps=10_000)
    assert distributed_loader(loaders[0], shuffle=True) is loaders[0]  # outside a process group


def test_the_book_defaults_match_a_hand_written_loop(loaders):
    """With fp32 and no extras, train_model is the book's loop: same weights as the loop written out."""
    train_loader = DataLoader(loaders[0].dataset, batch_size=2, shuffle=False, drop_last=True)
    model = new_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    run(model, optimizer, train_loader, loaders[1], max_steps=4, warmup_steps=2, initial_lr=1e-4, min_lr=1e-5)

    reference = new_model()
    ref_optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-3, weight_decay=0.1)
    total = len(train_loader)
    for step, (x, y) in zip(range(4), train_loader, strict=False):
        if step < 2:
            lr = 1e-4 + step * (1e-3 - 1e-4) / 2
        else:
            progress = (step - 2) / (total - 2)
            lr = 1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * progress))
        for group in ref_optimizer.param_groups:
            group["lr"] = lr
        ref_optimizer.zero_grad()
        logits = reference(x)
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()).backward()
        if step >= 2:
            torch.nn.utils.clip_grad_norm_(reference.parameters(), max_norm=1.0)
        ref_optimizer.step()
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_compiled_training_steps_match_eager_ones(loaders, monkeypatch):
    """compile_model=True compiles each step's forward pass and loss together: the same training, fused."""
    from torch._inductor.compile_fx import compile_fx

    graphs = []  # what torch.compile hands its backend, inductor, to turn into kernels
    real_compile = torch.compile

    def recording_compile(fn, **options):
        def backend(graph_module, example_inputs):
            graphs.append(graph_module)
            return compile_fx(graph_module, example_inputs)

        return real_compile(fn, backend=backend, **options)

    monkeypatch.setattr(torch, "compile", recording_compile)
    results = {}
    for compiled in (False, True):
        model = new_model()
        optimizer = create_optimizer(model, lr=1e-3)
        norms = []
        losses = run(model, optimizer, *loaders, max_steps=3, compile_model=compiled, grad_norms=norms)
        results[compiled] = model, losses, norms
    compiled_calls = {str(node.target) for graph in graphs for node in graph.graph.nodes}
    assert any("cross_entropy" in name for name in compiled_calls)  # the loss is compiled
    assert any("linear" in name for name in compiled_calls)  # and so is the model
    (eager, eager_losses, eager_norms), (compiled, compiled_losses, compiled_norms) = results.values()
    assert compiled_losses[0] == pytest.approx(eager_losses[0], abs=1e-4)  # training losses
    assert compiled_losses[1] == pytest.approx(eager_losses[1], abs=1e-4)  # validation losses
    assert compiled_norms == pytest.approx(eager_norms, rel=1e-3)
    for a, b in zip(eager.parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
