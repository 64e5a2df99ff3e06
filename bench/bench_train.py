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
  fast padded vocab   the same with padded_vocab_size=50304: the output layer computes 50304 = 393 x 128
                      scores and the model returns GPT-2's 50257 (chapter 4's option)
  fast compiled       the same as fast, its forward pass and loss through torch.compile, as
                      train_model(compile_model=True) compiles them (only with --compile: compiling takes
                      minutes)
  ... padded vocab    the same, padded as above
  hf <precision>      GPT2LMHeadModel with SDPA, bf16 autocast (and fp32), fused AdamW; "hf compiled" has its
                      forward pass and the same loss compiled together, as ours

--memory-reuse says which variants run inside cpu_memory_reuse: "fast" (ours, as train_model does; the
default), "all" (every variant: compares the models alone) or "none".

--order blocks (the default) runs each variant's steps one after another, inside its memory setting for the
whole block, as a training run would; --order rounds runs one step of each variant in turn, so background
load hits all of them alike, but then the variants share the heap: memory that one keeps serves the next
one's allocations, and the other's frees give it back, which blurs what cpu_memory_reuse does. Either way
the median step time is reported as a ratio to the book's path measured in the same run. Each variant
trains on the same sequence of batches, so the loss after the last step shows whether the fast path
learns what fp32 learns.

    python bench/bench_train.py                     # 124M, context 256, batch 2, 30 rounds: ~5 min, 2 cores
    python bench/bench_train.py --compile           # adds torch.compile variants
    python bench/bench_train.py --device cuda --batch 16 --context 1024 --compile
    python bench/bench_train.py --device cuda --batch 16 --context 1024 --compile \
        --compile-mode max-autotune-no-cudagraphs --only "book fp32,fast compiled,hf compiled"
    python bench/bench_train.py --layers 2 --rounds 3   # a quick smoke run
    python bench/bench_train.py --only "book fp32,fast,hf"  # only the variants whose names start so

On a GPU it also prints the model FLOPs utilization (MFU) of each variant: model FLOPs per token (6 N for
the matrix products of forward and backward, N = 12 x n_layers x emb_dim² weights in the blocks plus
emb_dim x vocab_size in the output layer, and 12 x n_layers x emb_dim x context for attention's scores and
weighted sums) x tokens/s over the card's dense bf16 rate (--peak-tflops; 989 for an H100 or H200 when not
given).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from contextlib import nullcontext

import torch
from timing import sync

from ch04_gpt.gpt import GPTModel, get_gpt_config
from ch05_pretraining.pretrain import fast_attention
from ch05_pretraining.pretraining import calc_loss_batch, create_train_val_loaders
from ch05_pretraining.training_extras import autocast_context, create_optimizer, resolve_precision
from shared.data import fetch, gpt2_encoding
from shared.device import cpu_has_fast_bf16, cpu_memory_reuse, get_device


class Variant:
    def __init__(self, name, build, precision, device):
        self.name, self.build = name, build
        self.precision, self.device = precision, device
        self.model = self.optimizer = self.loss_fn = None
        self.memory_reuse = False
        self.times: list[float] = []
        self.loss = float("nan")

    def setup(self):
        self.model, self.optimizer, self.loss_fn = self.build()

    def release(self):
        self.model = self.optimizer = self.loss_fn = None

    def memory(self):
        """This variant's memory setting (entering it again inside a block that has it changes nothing)."""
        return cpu_memory_reuse() if self.memory_reuse and self.device.type == "cpu" else nullcontext()

    def step(self, x, y) -> float:
        sync(self.device)
        start = time.perf_counter()
        with self.memory():
            self.optimizer.zero_grad(set_to_none=True)
            with autocast_context(self.precision, self.device):
                loss = self.loss_fn(x, y)
            loss.backward()
            self.optimizer.step()
            self.loss = loss.item()  # also waits for the step to finish
        sync(self.device)
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
    parser.add_argument(
        "--compile-mode",
        default="default",
        choices=("default", "reduce-overhead", "max-autotune-no-cudagraphs", "max-autotune"),
        help="torch.compile's mode for every compiled variant, ours and GPT2LMHeadModel alike "
        "(reduce-overhead and max-autotune replay each step as CUDA graphs on GPUs)",
    )
    parser.add_argument("--no-hf", action="store_true", help="leave out transformers' GPT2LMHeadModel")
    parser.add_argument("--device", help="cpu, cuda, ... (default: shared.device.get_device())")
    parser.add_argument("--memory-reuse", choices=("fast", "all", "none"), default="fast")
    parser.add_argument("--order", choices=("blocks", "rounds"), default="blocks")
    parser.add_argument("--only", help="comma-separated name prefixes: run only those variants")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 TFLOP/s, for the MFU")
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
        + (f", compile mode: {args.compile_mode}" if args.compile else "")
    )
    if device.type == "cpu":
        print(f"CPU has native bf16 (AMX or AVX512-BF16): {cpu_has_fast_bf16()}")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls on tensor cores (TF32), as usual on GPUs
        torch.backends.cudnn.allow_tf32 = True

    def ours(attn_impl, **extra):
        torch.manual_seed(123)
        return GPTModel({**cfg, "attn_impl": attn_impl, **extra}).to(device).train()

    fast_attn = fast_attention(device)  # what the pretraining command picks
    other_attn = "sdpa" if fast_attn == "explicit" else "explicit"

    def make(model_fn, optimizer_fn=lambda m: create_optimizer(m, args.lr), compiled=False, hf=False):
        """What builds a variant's model, optimizer and loss function: in --order blocks each variant exists
        only while it runs (six GPT-2 models with their gradients and AdamW states would take about 16 GB).
        Every variant computes the loss with the training loop's calc_loss_batch; a compiled variant has
        its forward pass and loss compiled together, as train_model(compile_model=True) has."""

        def build():
            model = model_fn()
            forward = (lambda ids: model(ids, use_cache=False).logits) if hf else model

            def loss_fn(x, y):
                return calc_loss_batch(x, y, forward, device)

            if compiled:
                loss_fn = torch.compile(loss_fn, mode=args.compile_mode)
            return model, optimizer_fn(model), loss_fn

        return build

    def book_optimizer(model):
        return torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1)

    variants = [Variant("book fp32", make(lambda: ours("explicit"), book_optimizer), "fp32", device)]
    variants.append(Variant(f"fast ({low})", make(lambda: ours(fast_attn, fused_ops=True)), low, device))
    variants.append(
        Variant(f"fast {other_attn} ({low})", make(lambda: ours(other_attn, fused_ops=True)), low, device)
    )
    tied = make(lambda: ours(fast_attn, fused_ops=True, tie_weights=True))
    variants.append(Variant(f"fast tied ({low})", tied, low, device))
    # GPUs multiply matrices fastest in tiles of 64 or 128: padded_vocab_size=50304 (393 x 128) output rows
    padded = make(lambda: ours(fast_attn, fused_ops=True, padded_vocab_size=50304))
    variants.append(Variant(f"fast padded vocab ({low})", padded, low, device))
    if args.compile:
        compiled = make(lambda: ours(fast_attn, fused_ops=True), compiled=True)
        variants.append(Variant(f"fast compiled ({low})", compiled, low, device))
        padded = make(lambda: ours(fast_attn, fused_ops=True, padded_vocab_size=50304), compiled=True)
        variants.append(Variant(f"fast compiled padded vocab ({low})", padded, low, device))
    if not args.no_hf:
        for precision in (low, "fp32"):
            hf = make(lambda: hf_model(cfg, device), hf=True)
            variants.append(Variant(f"hf {precision}", hf, precision, device))
            if args.compile and precision == low:
                hf_c = make(lambda: hf_model(cfg, device), compiled=True, hf=True)
                variants.append(Variant(f"hf compiled {precision}", hf_c, precision, device))

    if args.only:
        prefixes = tuple(p.strip() for p in args.only.split(",") if p.strip())
        variants = [v for v in variants if v.name.startswith(prefixes)]
        if not variants or variants[0].name != "book fp32":
            parser.error("--only must keep 'book fp32', the baseline of every ratio")
    for v in variants:
        v.memory_reuse = args.memory_reuse == "all" or (
            args.memory_reuse == "fast" and v.name.startswith("fast")
        )

    text = fetch("the-verdict.txt").read_text(encoding="utf-8")
    # The story has about 5,100 tokens: repeated, it fills a few batches of any size and context (the bench
    # measures speed; the loss only compares the variants).
    repeats = math.ceil(3 * args.batch * (args.context + 1) / (0.8 * len(gpt2_encoding().encode(text))))
    torch.manual_seed(123)
    train_loader, _ = create_train_val_loaders(text * repeats, args.context, batch_size=args.batch)
    batches = [(x.to(device), y.to(device)) for x, y in train_loader]
    warm_up = 2 if not args.compile else 3  # kernel choice, allocator, autocast caches, compiling
    steps = [batches[i % len(batches)] for i in range(warm_up + args.rounds)]
    if args.order == "rounds":
        for v in variants:
            v.setup()
        for i, (x, y) in enumerate(steps):
            for v in variants:
                seconds = v.step(x, y)
                if i >= warm_up:
                    v.times.append(seconds)
    else:  # those without memory reuse first: memory that a reuse block kept could serve their allocations
        for v in sorted(variants, key=lambda v: v.memory_reuse):
            v.setup()
            with v.memory():
                v.times = [v.step(x, y) for x, y in steps][warm_up:]
            v.release()

    tokens = args.batch * args.context
    base = statistics.median(variants[0].times)
    peak = args.peak_tflops
    if (
        peak is None
        and device.type == "cuda"
        and any(c in torch.cuda.get_device_name(device) for c in ("H100", "H200"))
    ):
        peak = 989.0  # dense bf16 TFLOP/s of an H100 / H200 (SXM)
    d, n_layers = cfg["emb_dim"], cfg["n_layers"]
    matmul_params = n_layers * 12 * d * d + d * cfg["vocab_size"]  # per block: qkv 3d², out d², ff 8d²; head
    flops_per_token = 6 * matmul_params + 12 * n_layers * d * args.context
    print(
        f"\ntraining step, {args.rounds} rounds after {warm_up} warm-up steps "
        "(ratio = book time / variant time)"
    )
    mfu_head = f"  {'MFU':>5s}" if peak else ""
    print(
        f"  {'variant':26s} {'ratio':>6s}  {'ms/step':>9s}  {'tokens/s':>9s}{mfu_head}  "
        f"loss after {warm_up + args.rounds} steps"
    )
    for v in variants:
        med = statistics.median(v.times)
        mfu = f"  {flops_per_token * tokens / med / (peak * 1e12):5.1%}" if peak else ""
        print(f"  {v.name:26s} {base / med:5.2f}x  {med * 1e3:9.1f}  {tokens / med:9.1f}{mfu}  {v.loss:.4f}")
    if peak:
        print(f"  (MFU: {flops_per_token / 1e6:.0f} MFLOP per token against {peak:.0f} TFLOP/s)")
    by_name = {v.name: statistics.median(v.times) for v in variants}
    fastest = min((n for n in by_name if not n.startswith("hf")), key=by_name.get)
    print(f"\nfastest of ours: {fastest}")
    print(f"  vs the book's fp32 path: {base / by_name[fastest]:.2f}x (target >= 3)")
    if f"hf {low}" in by_name:
        print(f"  vs GPT2LMHeadModel {low}: {by_name[f'hf {low}'] / by_name[fastest]:.2f}x (target >= 1.3)")
    if f"hf compiled {low}" in by_name:
        print(
            f"  vs compiled GPT2LMHeadModel {low}: {by_name[f'hf compiled {low}'] / by_name[fastest]:.2f}x "
            "(target on a GPU >= 1.3)"
        )
    fast = next((v for v in variants if v.name == f"fast ({low})"), None)
    if fast is not None:  # the book's model (untied) on the fast path: the same function as the book's run
        gap = abs(fast.loss - variants[0].loss)
        print(
            f"  loss after {warm_up + args.rounds} steps, {fast.name} vs the book's fp32 path (same weights, "
            f"same batches): {fast.loss:.4f} vs {variants[0].loss:.4f} (difference {gap:.4f})"
        )


if __name__ == "__main__":
    main()
