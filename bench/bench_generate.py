"""Benchmark text generation at GPT-2 124M shapes: the book's loop, chapter 4's KV cache, chapter 5's
`generate` (the fast path: a preallocated StaticKVCache) in fp32 and with bf16 weights, and Hugging Face
`transformers`' `GPT2LMHeadModel.generate()` with the same random weights (fp32 and bf16). On the CPU, bf16
`generate` also runs with oneDNN's packed weights instead of the course's native kernel
(shared/cpu_kernels.py), and with plain nn.Linear, to show what each is worth.

On a CUDA GPU it adds `generate` without its recorded step (CUDA graph), and without it and with cuDNN's
attention allowed (the bf16 slowdown `generate` avoids), and `transformers` with cuDNN's attention left
out as well, so that its best figure is the baseline.

Greedy decoding, batch 1, a 16-token prompt and 200 new tokens by default. All variants run in one process,
interleaved repetition by repetition (so background load hits them alike); each figure is the median and is
printed as a ratio to `generate_text_simple` in fp32 and to `transformers` in fp32, measured in the same run.
The bench also measures a copy bandwidth and says how close a decoding step comes to it: a step at batch 1
reads every weight once, so bytes of weights x tokens/s is the memory traffic it needs.

    python bench/bench_generate.py                        # ~5-10 min on a 2-core CPU
    python bench/bench_generate.py --new-tokens 40 --reps 1 --layers 2   # a quick smoke run
    python bench/bench_generate.py --device cuda --batch 8
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial

import torch
from timing import interleaved_medians, time_call

from ch04_gpt.gpt import GPTModel, generate_text_cached, generate_text_simple, get_gpt_config
from ch05_pretraining import fast_generation
from ch05_pretraining.fast_generation import generate_fast
from ch05_pretraining.pretraining import load_weights_into_gpt
from shared.cpu_kernels import bf16_gemv
from shared.device import cpu_has_fast_bf16, get_device

TARGETS = [  # (variant, baseline, floor) from the issue, on the CPU
    ("generate_fast fp32", "generate_text_simple fp32", 5.0),
    ("generate_fast fp32", "transformers fp32", 1.0),
    ("generate_fast bf16", "transformers fp32", 1.5),
]
GPU_TOKENS_PER_S = 500  # generate bf16, batch 1
GPU_VS_TRANSFORMERS = 3.0  # generate bf16 against the best transformers variant


def _hf_models(cfg: dict, device: torch.device):
    """GPT2LMHeadModel with transformers' own random initialization, in fp32 and bf16 (eager attention is
    not used: its default, SDPA)."""
    import transformers

    config = transformers.GPT2Config(
        vocab_size=cfg["vocab_size"],
        n_positions=cfg["context_length"],
        n_embd=cfg["emb_dim"],
        n_layer=cfg["n_layers"],
        n_head=cfg["n_heads"],
        tie_word_embeddings=cfg.get("tie_weights", False) is True,
    )
    torch.manual_seed(123)
    hf32 = transformers.GPT2LMHeadModel(config).eval().to(device)
    hf16 = transformers.GPT2LMHeadModel(config).eval().to(device)
    hf16.load_state_dict(hf32.state_dict())
    return hf32, hf16.to(torch.bfloat16)


def _hf_generate(hf, ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
    with torch.no_grad():
        return hf.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,  # never stop at end-of-text: the same work as the other variants
            do_sample=False,
            pad_token_id=0,
        )


def _hf_generate_without_cudnn(hf, ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
        return _hf_generate(hf, ids, new_tokens)


def _generate_without(*args, switched_off: dict) -> torch.Tensor:
    """``generate`` with some of its fast-path helpers (``fast_generation`` attributes) replaced."""
    saved = {name: getattr(fast_generation, name) for name in switched_off}
    for name, replacement in switched_off.items():
        setattr(fast_generation, name, replacement)
    try:
        return generate_fast(*args)
    finally:
        for name, original in saved.items():
            setattr(fast_generation, name, original)


# bf16 weights on the CPU: one row through oneDNN's packed weights instead of the native kernel; then plain
# nn.Linear for every product (the slow path both avoid)
NO_NATIVE = {"bf16_gemv": lambda: None}
NO_PACKING = {"_onednn_bf16": lambda: False}
# on a CUDA GPU: the StaticKVCache loop, every kernel launched from Python; then also with cuDNN's attention
NO_GRAPH = {"_cuda_graph_step": lambda *args: None}
NO_GRAPH_CUDNN = {**NO_GRAPH, "_attention_backends": lambda device: nullcontext()}


def _copy_bandwidth(device: torch.device, mib: int = 256, reps: int = 5) -> float:
    """Bytes read plus bytes written per second by a large tensor copy (the best of ``reps``)."""
    src = torch.empty(mib * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = min(time_call(partial(dst.copy_, src), device) for _ in range(reps))
    return 2 * src.numel() * src.element_size() / best


def _weight_bytes_per_token(model: GPTModel) -> int:
    """Bytes of weights a batch-1 decoding step reads: all of them once, except the embedding tables, of
    which it reads one row (the token embedding is read whole when it doubles as the output layer)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())  # a shared Parameter once
    skip = [model.pos_emb.weight]
    if model.out_head.weight is not model.tok_emb.weight:
        skip.append(model.tok_emb.weight)
    return total - sum(p.numel() * p.element_size() for p in skip)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3, help="timed rounds (median); every variant per round")
    parser.add_argument("--layers", type=int, default=None, help="override n_layers (for quick runs)")
    parser.add_argument("--attn", default="sdpa", choices=["explicit", "sdpa"], help="attention of GPTModel")
    parser.add_argument("--untied", action="store_true", help="separate output layer (GPTModel's default)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--no-transformers", action="store_true", help="skip the transformers variants")
    parser.add_argument("--no-simple", action="store_true", help="skip generate_text_simple (the slowest)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: shared.device.get_device())")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    overrides = {"drop_rate": 0.0, "qkv_bias": True, "tie_weights": not args.untied, "attn_impl": args.attn}
    if args.layers:
        overrides["n_layers"] = args.layers
    cfg = get_gpt_config("124M", **overrides)
    model32 = GPTModel(cfg).eval().to(device)
    hf32 = hf16 = None
    if not args.no_transformers:
        hf32, hf16 = _hf_models(cfg, device)
        load_weights_into_gpt(model32, hf32.state_dict())  # the same weights in both implementations
    model16 = GPTModel(cfg).eval().to(device)
    model16.load_state_dict(model32.state_dict())
    model16.to(torch.bfloat16)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, cfg["vocab_size"], (args.batch, args.prompt_tokens), generator=gen).to(device)
    ctx, n = cfg["context_length"], args.new_tokens

    print(
        f"GPT-2 124M shapes (n_layers {cfg['n_layers']}, {'untied' if args.untied else 'tied'} output "
        f"layer, {args.attn} attention), batch {args.batch}, {args.prompt_tokens}-token prompt, {n} new "
        f"tokens, greedy; device {device} ({torch.get_num_threads()} threads), torch {torch.__version__}"
    )
    if device.type == "cpu":
        print(f"CPU has native bf16 (AMX or AVX512-BF16): {cpu_has_fast_bf16()}")
        print(
            "the course's native bf16 kernel (shared/cpu_kernels.py): "
            + ("in use" if bf16_gemv() else "unavailable")
        )

    runs: dict[str, Callable[[], torch.Tensor]] = {}
    if not args.no_simple:
        runs["generate_text_simple fp32"] = partial(generate_text_simple, model32, ids, n, ctx)
    runs["generate_text_cached fp32"] = partial(generate_text_cached, model32, ids, n, ctx)
    runs["generate_fast fp32"] = partial(generate_fast, model32, ids, n, ctx)
    runs["generate_fast bf16"] = partial(generate_fast, model16, ids, n, ctx)
    if device.type == "cpu":  # what the native kernel and the packed weights are worth
        runs["generate_fast bf16 oneDNN"] = partial(
            _generate_without, model16, ids, n, ctx, switched_off=NO_NATIVE
        )
        runs["generate_fast bf16 unpacked"] = partial(
            _generate_without, model16, ids, n, ctx, switched_off=NO_PACKING
        )
    if device.type == "cuda":  # what the recorded step and keeping cuDNN out are worth
        runs["generate_fast bf16 no graph"] = partial(
            _generate_without, model16, ids, n, ctx, switched_off=NO_GRAPH
        )
        runs["generate_fast bf16 no graph, cudnn"] = partial(
            _generate_without, model16, ids, n, ctx, switched_off=NO_GRAPH_CUDNN
        )
    if hf32 is not None:
        runs["transformers fp32"] = partial(_hf_generate, hf32, ids, n)
        runs["transformers bf16"] = partial(_hf_generate, hf16, ids, n)
        if device.type == "cuda":
            runs["transformers bf16 no cudnn"] = partial(_hf_generate_without_cudnn, hf16, ids, n)

    # warm-up (allocator, kernel selection) and the check that the variants write the same tokens
    short = {
        name: partial(run.func, *run.args[:2], min(n, 8), *run.args[3:], **run.keywords)
        for name, run in runs.items()
    }
    for run in short.values():
        run()
    outputs = {name: run().cpu() for name, run in runs.items() if "simple" not in name}
    reference = outputs["generate_text_cached fp32"]
    print("\nTokens (vs generate_text_cached fp32, which tests/ prove equal to generate_text_simple):")
    for name, out in outputs.items():
        same = (out[:, ids.shape[1] :] == reference[:, ids.shape[1] :]).float().mean().item()
        print(f"  {name:28s} {same:6.1%} of the new tokens equal")

    print(f"\nTiming {len(runs)} variants x {args.reps} rounds, interleaved:")
    medians = interleaved_medians(runs, args.reps, device, show_rounds=True)
    tokens = n * args.batch
    bandwidth = _copy_bandwidth(device)
    bases = [b for b in ("generate_text_simple fp32", "transformers fp32") if b in medians]
    header = "".join(f"  vs {b:26s}" for b in bases)
    print(f"\n{'variant':28s} {'tokens/s':>9s} {'weights GB/s':>13s}{header}")
    for name, seconds in medians.items():
        model = model16 if "bf16" in name else model32
        rate = tokens / seconds
        traffic = _weight_bytes_per_token(model) * n / seconds  # per step, one read of every weight
        ratios = "".join(f"  {medians[b] / seconds:6.2f}x{'':22s}" for b in bases)
        print(f"{name:28s} {rate:9.1f} {traffic / 1e9:13.2f}{ratios}")
    print(
        f"\nCopy bandwidth (bytes read + written per second, 256 MiB tensor): {bandwidth / 1e9:.1f} GB/s. "
        f"Weights read per step: {_weight_bytes_per_token(model32) / 1e6:.0f} MB fp32, "
        f"{_weight_bytes_per_token(model16) / 1e6:.0f} MB bf16."
    )
    for name in ("generate_fast fp32", "generate_fast bf16"):
        traffic = _weight_bytes_per_token(model16 if "bf16" in name else model32) * n / medians[name]
        print(f"  {name}: weights read at {traffic / bandwidth:.0%} of the copy bandwidth")
    if "generate_fast bf16 unpacked" in medians:
        for name, what in (
            ("generate_fast bf16 oneDNN", "oneDNN's packed weights"),
            ("generate_fast bf16 unpacked", "plain nn.Linear"),
        ):
            gain = medians[name] / medians["generate_fast bf16"]
            verdict = "ok" if gain >= 1.0 else "no longer pays: check _bf16_linear"
            print(f"  bf16 on the CPU: generate vs {what}: {gain:.2f}x ({verdict})")
    print("\nTargets (issue 11):")
    if device.type == "cuda":
        rate = tokens / medians["generate_fast bf16"]
        verdict = f", {'met' if rate >= GPU_TOKENS_PER_S else 'NOT met'}" if args.batch == 1 else ""
        print(
            f"  generate bf16: {rate:.0f} tokens/s at batch {args.batch} "
            f"(floor at batch 1: {GPU_TOKENS_PER_S}{verdict})"
        )
        best = min(
            (name for name in medians if name.startswith("transformers")), key=medians.get, default=None
        )
        if best:
            ratio = medians[best] / medians["generate_fast bf16"]
            verdict = "met" if ratio >= GPU_VS_TRANSFORMERS else "NOT met"
            print(
                f"  generate bf16 >= {GPU_VS_TRANSFORMERS}x the best transformers ({best}): "
                f"{ratio:.2f}x, {verdict}"
            )
        return
    for variant, base, floor in TARGETS:
        if base in medians:
            ratio = medians[base] / medians[variant]
            verdict = "met" if ratio >= floor else "NOT met"
            print(f"  {variant} >= {floor}x {base}: {ratio:.2f}x, {verdict}")


if __name__ == "__main__":
    main()
