"""Benchmark GPTModel: explicit vs fused (sdpa) attention, fp32 vs bf16 autocast, and greedy generation.

Every figure is printed as a ratio to a baseline measured in the same run (the book's setting: explicit
attention, fp32); absolute times appear only next to those ratios. Variants are interleaved, repetition by
repetition, so background load affects all of them alike, and the median is reported.

    python bench/bench_gpt.py                      # GPT-2 124M, context 256, batch 2: ~1-2 min, 2 cores
    python bench/bench_gpt.py --device cuda --batch 8 --context 1024
    python bench/bench_gpt.py --layers 2 --reps 2  # a quick smoke run
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from ch04_gpt.gpt import GPTModel, generate_text_simple, get_gpt_config
from shared.device import autocast_dtype, cpu_has_fast_bf16, get_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _autocast(device: torch.device, dtype: torch.dtype):
    return torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()


def _forward(model: GPTModel, ids: torch.Tensor, dtype: torch.dtype) -> None:
    with torch.no_grad(), _autocast(ids.device, dtype):
        model(ids)


def _train_step(model: GPTModel, ids: torch.Tensor, dtype: torch.dtype) -> None:
    with _autocast(ids.device, dtype):
        logits = model(ids)
    loss = F.cross_entropy(logits.flatten(0, 1).float(), ids.roll(-1, dims=1).flatten())
    loss.backward()
    model.zero_grad(set_to_none=True)


def _generate(model: GPTModel, ids: torch.Tensor, dtype: torch.dtype, new_tokens: int) -> None:
    with _autocast(ids.device, dtype):
        generate_text_simple(model, ids, new_tokens, model.cfg["context_length"])


def _time(fn, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _report(title: str, medians: dict[str, float], baseline: str, unit_work: float | None = None) -> None:
    print(f"\n{title}  (ratio = baseline time / variant time; >1 is faster)")
    base = medians[baseline]
    for name, seconds in medians.items():
        rate = f"  {unit_work / seconds:8.1f} tokens/s" if unit_work else ""
        print(f"  {name:24s} {base / seconds:5.2f}x   ({seconds * 1e3:8.1f} ms){rate}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="gpt2-small (124M)", help="a name get_gpt_config knows")
    parser.add_argument("--context", type=int, default=256, help="context_length (and tokens per row)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--layers", type=int, default=None, help="override n_layers (for quick runs)")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions per variant (median)")
    parser.add_argument("--new-tokens", type=int, default=16, help="tokens generated per generation run")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: shared.device.get_device())")
    args = parser.parse_args()

    device = get_device(args.device)
    overrides = {"context_length": args.context, "drop_rate": 0.0}
    if args.layers:
        overrides["n_layers"] = args.layers
    cfg = get_gpt_config(args.model, **overrides)
    torch.manual_seed(123)
    model = GPTModel(cfg).to(device)
    ids = torch.randint(0, cfg["vocab_size"], (args.batch, args.context), device=device)
    low = autocast_dtype(device)
    low = torch.bfloat16 if low == torch.float32 else low  # measure bf16 even where it is not native
    low_name = {torch.bfloat16: "bf16", torch.float16: "fp16"}[low]
    print(
        f"{args.model}, n_layers {cfg['n_layers']}, batch {args.batch} x {args.context} tokens, "
        f"device {device} ({torch.get_num_threads()} threads), torch {torch.__version__}"
    )
    if device.type == "cpu":
        print(f"CPU has native bf16 (AMX or AVX512-BF16): {cpu_has_fast_bf16()}")

    variants = [(impl, dtype) for dtype in (torch.float32, low) for impl in ("explicit", "sdpa")]

    def name(variant):
        impl, dtype = variant
        return f"{impl} {'fp32' if dtype == torch.float32 else low_name + ' autocast'}"

    prompt = ids[:1, :4]
    jobs = {
        "forward (no grad)": lambda dtype: _forward(model.train(False), ids, dtype),
        "forward + backward": lambda dtype: _train_step(model.train(True), ids, dtype),
        f"generate {args.new_tokens} tokens (batch 1)": lambda dtype: _generate(
            model.train(False), prompt, dtype, args.new_tokens
        ),
    }
    for title, job in jobs.items():
        times: dict[str, list[float]] = {name(v): [] for v in variants}
        for variant in variants:  # warm-up: kernel selection, allocator, autocast caches
            model.set_attention_impl(variant[0])
            job(variant[1])
        for _ in range(args.reps):
            for variant in variants:
                model.set_attention_impl(variant[0])
                times[name(variant)].append(_time(lambda job=job, v=variant: job(v[1]), device))
        medians = {k: statistics.median(v) for k, v in times.items()}
        work = args.new_tokens if title.startswith("generate") else None
        _report(title, medians, baseline=name(variants[0]), unit_work=work)


if __name__ == "__main__":
    main()
