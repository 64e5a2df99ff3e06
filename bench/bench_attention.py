"""Benchmark MultiHeadAttention's explicit path against its fused ``use_sdpa=True`` path.

Times one training step (forward + backward) at GPT-2-small-like shapes, in fp32 and under bf16 autocast,
and prints each time as a ratio to the explicit fp32 step measured in the same run. It also reports how
many MiB each variant keeps saved for the backward pass: the explicit path stores the
(batch, heads, num_tokens, num_tokens) score and weight matrices, the fused kernels do not.

    python bench/bench_attention.py                       # batch 8, 256 tokens, 768 dims, 12 heads
    python bench/bench_attention.py --tokens 1024 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from timing import sync

from ch03_attention.attention import MultiHeadAttention
from shared.device import cpu_has_fast_bf16, get_device


def _step(mha: MultiHeadAttention, x: torch.Tensor, dtype: torch.dtype) -> None:
    with torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32):
        out = mha(x)
    out.float().square().mean().backward()
    mha.zero_grad(set_to_none=True)


def saved_mib(mha: MultiHeadAttention, x: torch.Tensor, dtype: torch.dtype) -> float:
    """MiB of distinct tensors autograd keeps for the backward pass of one forward call."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32):
            out = mha(x)
    del out
    return sum(storages.values()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--emb", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--dropout", type=float, default=0.0, help="attention dropout during the timed steps")
    parser.add_argument("--reps", type=int, default=5, help="timed steps per variant (median is reported)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: shared.device.get_device())")
    args = parser.parse_args()

    device = get_device(args.device)
    torch.manual_seed(123)
    mha = MultiHeadAttention(args.emb, args.emb, args.tokens, args.dropout, args.heads).to(device).train()
    x = torch.randn(args.batch, args.tokens, args.emb, device=device)

    variants = [(use_sdpa, dtype) for dtype in (torch.float32, torch.bfloat16) for use_sdpa in (False, True)]
    names = {v: f"{'sdpa' if v[0] else 'explicit':8s} {'fp32' if v[1] == torch.float32 else 'bf16 autocast'}"
             for v in variants}  # fmt: skip
    times: dict[tuple, list[float]] = {v: [] for v in variants}
    for use_sdpa, dtype in variants:  # warm-up (kernel selection, allocator)
        mha.use_sdpa = use_sdpa
        _step(mha, x, dtype)
    for _ in range(args.reps):  # interleave the variants so background load hits all of them alike
        for use_sdpa, dtype in variants:
            mha.use_sdpa = use_sdpa
            sync(device)
            start = time.perf_counter()
            _step(mha, x, dtype)
            sync(device)
            times[(use_sdpa, dtype)].append(time.perf_counter() - start)

    extra = f", CPU bf16 units: {cpu_has_fast_bf16()}" if device.type == "cpu" else ""
    print(f"device: {device}{extra}, torch {torch.__version__}, threads: {torch.get_num_threads()}")
    print(
        f"MultiHeadAttention forward+backward, batch {args.batch}, {args.tokens} tokens, {args.emb} dims, "
        f"{args.heads} heads, dropout {args.dropout}, median of {args.reps}"
    )
    baseline = statistics.median(times[variants[0]])
    print(f"{'variant':24s} {'ms/step':>9s} {'speed-up':>9s} {'saved for backward':>19s}")
    for v in variants:
        mha.use_sdpa = v[0]
        median = statistics.median(times[v])
        saved = saved_mib(mha, x, v[1])
        print(f"{names[v]:24s} {median * 1e3:9.1f} {baseline / median:8.2f}x {saved:15.0f} MiB")


if __name__ == "__main__":
    main()
