"""Benchmark GPTModel: explicit vs fused (sdpa) attention, fp32 vs bf16 autocast, greedy generation, and
generation with and without the KV cache (ch04's bonus section).

Every figure is printed as a ratio to a baseline measured in the same run (the book's setting: explicit
attention, fp32); absolute times appear only next to those ratios. Variants are interleaved, repetition by
repetition, so background load affects all of them alike, and the median is reported.

    python bench/bench_gpt.py                      # GPT-2 124M, context 256, batch 2: ~2-3 min, 2 cores
    python bench/bench_gpt.py --device cuda --batch 8 --context 1024
    python bench/bench_gpt.py --layers 2 --reps 2  # a quick smoke run
"""

from __future__ import annotations

import argparse
from contextlib import nullcontext
from functools import partial

import torch
import torch.nn.functional as F
from timing import interleaved_medians

from ch04_gpt.gpt import GPTModel, generate_text_cached, generate_text_simple, get_gpt_config
from shared.device import autocast_dtype, cpu_has_fast_bf16, get_device


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


def _generate(
    model: GPTModel, ids: torch.Tensor, dtype: torch.dtype, new_tokens: int, generate=generate_text_simple
) -> torch.Tensor:
    with _autocast(ids.device, dtype):
        return generate(model, ids, new_tokens, model.cfg["context_length"])


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
    parser.add_argument(
        "--cache-new-tokens", type=int, default=64, help="tokens generated per run, with vs without KV cache"
    )
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

    def dtype_name(dtype):
        return "fp32" if dtype == torch.float32 else f"{low_name} autocast"

    def name(variant):
        impl, dtype = variant
        return f"{impl} {dtype_name(dtype)}"

    prompt = ids[:1, :4]
    jobs = {
        "forward (no grad)": lambda dtype: _forward(model.train(False), ids, dtype),
        "forward + backward": lambda dtype: _train_step(model.train(True), ids, dtype),
        f"generate {args.new_tokens} tokens (batch 1)": lambda dtype: _generate(
            model.train(False), prompt, dtype, args.new_tokens
        ),
    }

    def run(variant, job):
        impl, dtype = variant
        model.set_attention_impl(impl)
        job(dtype)

    for title, job in jobs.items():
        runs = {name(v): partial(run, v, job) for v in variants}
        for warm_up in runs.values():  # kernel selection, allocator, autocast caches
            warm_up()
        work = args.new_tokens if title.startswith("generate") else None
        medians = interleaved_medians(runs, args.reps, device)
        _report(title, medians, baseline=name(variants[0]), unit_work=work)

    # KV cache: whole greedy generations, the book's loop (every step re-reads the whole text) vs the cached
    # one (every step reads one new token). By default the text fits the context: the cache is never refilled.
    model.train(False).set_attention_impl("explicit")
    new_tokens = args.cache_new_tokens
    generators = {"no cache": generate_text_simple, "KV cache": generate_text_cached}
    runs = {
        f"{gen_name} {dtype_name(dtype)}": partial(_generate, model, prompt, dtype, new_tokens, generate)
        for dtype in (torch.float32, low)
        for gen_name, generate in generators.items()
    }
    # warm-up, and a check that both loops write the same text: fp32 in full, the low precision briefly
    texts = [
        _generate(model, prompt, torch.float32, new_tokens, generate) for generate in generators.values()
    ]
    for generate in generators.values():
        _generate(model, prompt, low, 2, generate)
    medians = interleaved_medians(runs, args.reps, device)
    title = f"generate {new_tokens} tokens, {prompt.shape[1]}-token prompt (batch 1, explicit attention)"
    _report(title, medians, baseline=next(iter(runs)), unit_work=new_tokens)
    print(f"  fp32: the KV cache gives the same token ids as no cache: {torch.equal(*texts)}")


if __name__ == "__main__":
    main()
