"""Benchmark full training steps (forward, loss, backward, optimizer step) of GPT-2 124M: the book's path
against appendix D's fast path, with transformers' GPT2LMHeadModel as the outside reference.

Variants (all start from the same weights where the architecture allows, dropout 0, the same batches):
  book fp32           GPTModel, explicit attention, fp32, torch.optim.AdamW(model.parameters()) (the book)
  fast                the pretraining command's settings: GPTModel with fused_ops (LayerNorm and GELU in one
                      kernel each), the attention code that trains faster on the device (explicit on the CPU,
                      SDPA on GPUs), the precision resolve_precision("auto") picks (bf16 on a CPU with
                      AMX/AVX512-BF16 or a recent GPU), create_optimizer (fused AdamW, decay on matrices),
                      and on the CPU shared.device.cpu_memory_reuse, as train_model uses it
  fast <other attn>   the same with the other attention code (SDPA on the CPU, explicit on GPUs)
  fast tied           the same as fast with tie_weights=True (one 50257 x 768 matrix for input and output)
  fast compiled       the same as fast, through torch.compile (only with --compile: compiling takes minutes)
  hf <precision>      GPT2LMHeadModel with SDPA, bf16 autocast (and fp32), fused AdamW

--memory-reuse says which variants run inside cpu_memory_reuse: "fast" (ours, as train_model does; the
default), "all" (every variant: compares the models alone) or "none".

Every round runs one training step of each variant in turn, so background load hits all of them alike;
the median step time is reported as a ratio to the book's path measured in the same run. Each variant
trains on the same sequence of batches, so the loss after the last round shows whether the fast path
learns what fp32 learns.

    python bench/bench_train.py                     # 124M, context 256, batch 2, 30 rounds: ~5 min, 2 cores
    python bench/bench_train.py --compile           # adds torch.compile variants
    python bench/bench_train.py --device cuda --batch 16 --context 1024 --compile
    python bench/bench_train.py --layers 2 --rounds 3   # a quick smoke run
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from ch04_gpt.gpt import GPTModel, get_gpt_config
from ch05_pretraining.pretraining import create_train_val_loaders
from ch05_pretraining.training_extras import autocast_context, create_optimizer, resolve_precision
from shared.data import fetch
from shared.device import cpu_has_fast_bf16, cpu_memory_reuse, get_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Variant:
    def __init__(self, name, model, optimizer, precision, device, hf=False):
        self.name, self.model, self.optimizer = name, model, optimizer
        self.precision, self.device, self.hf = precision, device, hf
        self.step_fn = model
        self.memory_reuse = False
        self.times: list[float] = []
        self.loss = float("nan")

    def step(self, x, y) -> float:
        _sync(self.device)
        start = time.perf_counter()
        reuse = self.memory_reuse and self.device.type == "cpu"
        with cpu_memory_reuse() if reuse else nullcontext():
            self.optimizer.zero_grad(set_to_none=True)
            with autocast_context(self.precision, self.device):
                out = self.step_fn(x)
                logits = out.logits if self.hf else out
                loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
            loss.backward()
            self.optimizer.step()
            self.loss = loss.item()  # also waits for the step to finish
        _sync(self.device)
        return time.perf_counter() - start


def hf_model(cfg, device):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=cfg["vocab_size"],
        n_positions=cfg["context_length"],
        n_embd=cfg["emb_dim"],
        n_layer=cfg["n_layers"],
        n_head=cfg["n_heads"],
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    config._attn_implementation = "sdpa"  # PyTorch's fused attention, as our fast path uses
    torch.manual_seed(123)
    return GPT2LMHeadModel(config).to(device).train()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="gpt2-small (124M)", help="a name get_gpt_config knows")
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--layers", type=int, help="override n_layers (for quick runs)")
    parser.add_argument("--rounds", type=int, default=30, help="training steps per variant (timed, median)")
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--compile", action="store_true", help="add torch.compile variants")
    parser.add_argument("--no-hf", action="store_true", help="leave out transformers' GPT2LMHeadModel")
    parser.add_argument("--device", help="cpu, cuda, ... (default: shared.device.get_device())")
    parser.add_argument("--memory-reuse", choices=("fast", "all", "none"), default="fast")
    args = parser.parse_args()

    device = get_device(args.device)
    overrides = {"context_length": args.context, "drop_rate": 0.0}
    if args.layers:
        overrides["n_layers"] = args.layers
    cfg = get_gpt_config(args.model, qkv_bias=True, **overrides)  # qkv biases, as GPT-2 has them
    low = resolve_precision("auto", device)
    low = "bf16" if low == "fp32" else low  # measure bf16 even where it is not native
    print(
        f"{args.model}, n_layers {cfg['n_layers']}, batch {args.batch} x {args.context} tokens, "
        f"device {device} ({torch.get_num_threads()} threads), torch {torch.__version__}, fast: {low}, "
        f"memory reuse: {args.memory_reuse}"
    )
    if device.type == "cpu":
        print(f"CPU has native bf16 (AMX or AVX512-BF16): {cpu_has_fast_bf16()}")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls on tensor cores (TF32), as usual on GPUs
        torch.backends.cudnn.allow_tf32 = True

    def ours(attn_impl, **extra):
        torch.manual_seed(123)
        return GPTModel({**cfg, "attn_impl": attn_impl, **extra}).to(device).train()

    fast_attn = "explicit" if device.type == "cpu" else "sdpa"  # what the pretraining command picks
    other_attn = "sdpa" if fast_attn == "explicit" else "explicit"

    variants = []
    book = ours("explicit")
    variants.append(
        Variant(
            "book fp32",
            book,
            torch.optim.AdamW(book.parameters(), lr=args.lr, weight_decay=0.1),
            "fp32",
            device,
        )
    )
    fast = ours(fast_attn, fused_ops=True)
    variants.append(Variant(f"fast ({low})", fast, create_optimizer(fast, args.lr), low, device))
    other = ours(other_attn, fused_ops=True)
    variants.append(
        Variant(f"fast {other_attn} ({low})", other, create_optimizer(other, args.lr), low, device)
    )
    tied = ours(fast_attn, fused_ops=True, tie_weights=True)
    variants.append(Variant(f"fast tied ({low})", tied, create_optimizer(tied, args.lr), low, device))
    if args.compile:
        compiled = ours(fast_attn, fused_ops=True)
        v = Variant(f"fast compiled ({low})", compiled, create_optimizer(compiled, args.lr), low, device)
        v.step_fn = torch.compile(compiled)
        variants.append(v)
    if not args.no_hf:
        for precision in (low, "fp32"):
            hf = hf_model(cfg, device)
            variants.append(
                Variant(f"hf {precision}", hf, create_optimizer(hf, args.lr), precision, device, True)
            )
            if args.compile and precision == low:
                hf_c = hf_model(cfg, device)
                v = Variant(
                    f"hf compiled {precision}", hf_c, create_optimizer(hf_c, args.lr), precision, device
                )
                v.hf, v.step_fn = True, torch.compile(hf_c)
                variants.append(v)

    for v in variants:
        v.memory_reuse = args.memory_reuse == "all" or (
            args.memory_reuse == "fast" and v.name.startswith("fast")
        )

    text = fetch("the-verdict.txt").read_text(encoding="utf-8")
    torch.manual_seed(123)
    train_loader, _ = create_train_val_loaders(text, args.context, batch_size=args.batch)
    batches = [(x.to(device), y.to(device)) for x, y in train_loader]
    warm_up = 2 if not args.compile else 3  # kernel choice, allocator, autocast caches, compiling
    for i in range(warm_up):
        x, y = batches[i % len(batches)]
        for v in variants:
            v.step(x, y)
    for r in range(args.rounds):
        x, y = batches[(warm_up + r) % len(batches)]
        for v in variants:
            v.times.append(v.step(x, y))

    tokens = args.batch * args.context
    base = statistics.median(variants[0].times)
    print(
        f"\ntraining step, {args.rounds} rounds after {warm_up} warm-up steps "
        "(ratio = book time / variant time)"
    )
    print(
        f"  {'variant':26s} {'ratio':>6s}  {'ms/step':>9s}  {'tokens/s':>9s}  "
        f"loss after {warm_up + args.rounds} steps"
    )
    for v in variants:
        med = statistics.median(v.times)
        print(f"  {v.name:26s} {base / med:5.2f}x  {med * 1e3:9.1f}  {tokens / med:9.1f}  {v.loss:.4f}")
    by_name = {v.name: statistics.median(v.times) for v in variants}
    fastest = min((n for n in by_name if not n.startswith("hf")), key=by_name.get)
    print(f"\nfastest of ours: {fastest}")
    print(f"  vs the book's fp32 path: {base / by_name[fastest]:.2f}x (target >= 3)")
    if f"hf {low}" in by_name:
        print(f"  vs GPT2LMHeadModel {low}: {by_name[f'hf {low}'] / by_name[fastest]:.2f}x (target >= 1.3)")
    if f"hf compiled {low}" in by_name:
        print(f"  vs compiled GPT2LMHeadModel: {by_name[f'hf compiled {low}'] / by_name[fastest]:.2f}x")
    fast_loss = next(v.loss for v in variants if v.name == fastest)
    print(f"  loss after {warm_up + args.rounds} steps: {fast_loss:.4f} vs fp32 {variants[0].loss:.4f}")


if __name__ == "__main__":
    main()
