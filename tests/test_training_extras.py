"""Appendix D's train_model: schedule, clipping, accumulation, mixed precision, optimizer, resuming."""

import math

import pytest
import torch
from torch.utils.data import DataLoader

from ch04_gpt.gpt import GPTModel
from shared import (
    calc_loss_loader,
    create_optimizer,
    create_train_val_loaders,
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
    assert len(loaders[0]) == 10  # total steps: 10, of which 3 warm up and 7 decay
    expected = [1e-4, 4e-4, 7e-4, 1e-3, 1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi / 7))]
    assert lrs == pytest.approx(expected, rel=1e-12), (
        "train_model's learning rate must rise from initial_lr to the peak in warmup_steps steps, then "
        f"follow the cosine over the remaining steps: expected {expected}, got {lrs}"
    )
    assert optimizer.param_groups[0]["lr"] == pytest.approx(expected[-1], rel=1e-12), (
        "the optimizer must take its steps at the scheduled learning rate"
    )


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
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    if not pick_vec_isa():  # a CPU without vector units, or ATEN_CPU_CAPABILITY=default
        pytest.xfail("torch.compile's scalar C++ code for such CPUs fails to build (it uses at::vec)")
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


class CharTokenizer:
    """Ids 1 to 50 for the sample a training loop prints after each epoch (a tiny model's vocabulary)."""

    def encode(self, text, allowed_special=()):
        return [ord(c) % 50 + 1 for c in text]

    def decode(self, ids):
        return "".join(chr(ord("a") + i % 26) for i in ids)


TINY_VOCAB = {**CFG, "vocab_size": 100, "context_length": 16}


def fixed_dataset(rows=20, num_tokens=8):
    ids = torch.randint(0, 100, (rows, num_tokens + 1), generator=torch.Generator().manual_seed(8))
    return torch.utils.data.TensorDataset(ids[:, :-1], ids[:, 1:])


def run_tiny(model, optimizer, train_loader, val_loader, **kwargs):
    options = {"n_epochs": 2, "eval_freq": 3, "eval_iter": 1, "warmup_steps": 2, "progress": False}
    options.update(kwargs)
    return train_model(
        model, train_loader, val_loader, optimizer, "cpu", start_context="Every", tokenizer=CharTokenizer(),
        **options,
    )  # fmt: skip


@pytest.mark.parametrize(
    "accum, expected",
    [
        (1, [16, 64, 112, 160, 208, 256, 304]),  # 20 steps of 2 x 8 tokens; steps 0, 3, ..., 18 evaluated
        (2, [32, 128, 224, 320]),  # 10 steps of 2 batches of 2 x 8 tokens; steps 0, 3, 6, 9 evaluated
    ],
)
def test_train_model_records_tokens_seen_at_every_eval_freq_steps(accum, expected, capsys):
    dataset = fixed_dataset()  # 20 windows of 8 tokens, 10 batches of 2 per epoch
    loader = DataLoader(dataset, batch_size=2)
    model = new_model(**TINY_VOCAB)
    _, val_losses, tokens_seen, lrs = run_tiny(
        model, create_optimizer(model, lr=1e-3), loader, loader, grad_accum_steps=accum
    )
    assert tokens_seen == expected, (
        "train_model must evaluate after optimizer steps 0, eval_freq, 2 x eval_freq, ... and count every "
        f"token of every batch it trained on: expected {expected}, got {tokens_seen}"
    )
    assert len(val_losses) == len(expected) and len(lrs) == 20 // accum
    out = capsys.readouterr().out
    steps = [int(line.split("(Iter ")[1][:6]) for line in out.splitlines() if "(Iter " in line]
    assert steps == list(range(0, 20 // accum, 3)), f"the printed evaluations must be every 3 steps: {steps}"


def test_train_model_evaluates_without_dropout():
    """With a learning rate of 0 the weights never change, so every evaluation of the (unshuffled)
    validation batches must give the same loss: the loss of the model in eval mode."""
    dataset = fixed_dataset()
    loader = DataLoader(dataset, batch_size=2)
    model = new_model(**{**TINY_VOCAB, "drop_rate": 0.5})
    model.eval()
    expected = calc_loss_loader(loader, model, "cpu", num_batches=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    _, val_losses, _, _ = run_tiny(
        model, optimizer, loader, loader, n_epochs=1, eval_freq=2, eval_iter=2, initial_lr=0.0, min_lr=0.0
    )
    assert len(val_losses) == 5
    assert val_losses == pytest.approx([expected] * 5, abs=1e-6), (
        "train_model's evaluations must run with dropout off (the same loss each time, the eval-mode loss)"
    )
    assert model.training, "train_model trains, and leaves the model, in training mode"


def test_train_model_counts_the_tokens_of_every_process(tmp_path, monkeypatch):
    """Under DistributedDataParallel each step trains on world_size batches, one per process; a process
    group of one whose size reads 2 makes train_model count as process 0 of 2 does."""
    import torch.distributed as dist
    from torch.utils.data import DistributedSampler

    if not dist.is_available():
        pytest.skip("this PyTorch build has no torch.distributed")
    dataset = fixed_dataset()
    # process 0 of 2 reads windows 0, 2, 4, ...: 10 windows, 5 batches of 2 x 8 tokens
    sampler = DistributedSampler(dataset, num_replicas=2, rank=0, shuffle=False)
    loader = DataLoader(dataset, batch_size=2, sampler=sampler)
    model = new_model(**TINY_VOCAB)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
        _, _, tokens_seen, _ = run_tiny(model, optimizer, loader, loader, n_epochs=1, eval_freq=1)
    finally:
        monkeypatch.undo()
        dist.destroy_process_group()
    assert tokens_seen == [32, 64, 96, 128, 160], (
        "train_model must count the tokens of all processes' batches (16 per batch x 2 processes per "
        f"step): got {tokens_seen}"
    )
