"""Benchmark generation speed of Llama 3, Qwen3 and Qwen3-MoE beside chapter 4's GPT-2 of similar size.

All models have random weights and the same width, depth and number of query heads; GPT-2 and Llama share
their token embedding with the output layer (GPT-2's tying), the feed-forward networks have about the same
number of parameters (GPT-2's GELU network of 4 x emb_dim, the SwiGLU networks' three matrices of
8/3 x emb_dim), and the MoE model's 8 experts of half that size, 2 per token, compute as much as one dense
network while storing 4 times its parameters. Every figure is printed as a ratio to GPT-2 measured in the
same run: greedy tokens per second with chapter 4's KV cache (generate_text_cached) and, with --plain,
without it (chapter 5's generate). Variants are interleaved round by round and the median is reported.

    python bench/bench_llama_qwen.py                 # GPT-2 124M shapes, 64 new tokens: ~2 min, 2 cores
    python bench/bench_llama_qwen.py --size tiny --plain
    python bench/bench_llama_qwen.py --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
from timing import interleaved_medians

from ch04_gpt.gpt import GPTModel, count_parameters, generate_text_cached, get_gpt_config
from ch05_pretraining.pretraining import generate
from llama_qwen.llama3 import Llama3Model
from llama_qwen.qwen3 import Qwen3Model, count_active_parameters
from shared.device import get_device

SIZES = {  # (emb_dim, n_layers, n_heads): GPT-2 124M's shapes, and a tiny one
    "small": (768, 12, 12),
    "tiny": (256, 4, 8),
}


def build_models(size, context, dtype, device):
    """{name: model}, random weights, eval mode: GPT-2 and its Llama 3, Qwen3 and Qwen3-MoE counterparts."""
    emb_dim, n_layers, n_heads = SIZES[size]
    hidden = 64 * round(8 / 3 * emb_dim / 64)  # SwiGLU's three matrices ~ GELU's two of 4 x emb_dim
    llama_cfg = {
        "vocab_size": 50257,
        "context_length": context,
        "emb_dim": emb_dim,
        "n_heads": n_heads,
        "n_layers": n_layers,
        "hidden_dim": hidden,
        "n_kv_groups": n_heads // 4,  # 4 query heads per key/value head, as Llama 3.2 1B
        "rope_base": 500_000.0,
        "rope_freq": None,
        "dtype": dtype,
        "tie_word_embeddings": True,
    }
    qwen_cfg = {**llama_cfg, "qk_norm": True, "head_dim": emb_dim // n_heads, "norm_eps": 1e-6}
    moe_cfg = {**qwen_cfg, "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": hidden // 2}
    gpt_cfg = get_gpt_config(
        "124M", emb_dim=emb_dim, n_layers=n_layers, n_heads=n_heads, context_length=context
    )
    torch.manual_seed(0)
    with torch.device(device):
        models = {
            "GPT-2 (chapter 4)": GPTModel({**gpt_cfg, "drop_rate": 0.0, "tie_weights": True}).to(dtype),
            "Llama 3 (GQA)": Llama3Model(llama_cfg),
            "Qwen3 (GQA, QK-norm)": Qwen3Model(qwen_cfg),
            "Qwen3-MoE (8 experts, 2 active)": Qwen3Model(moe_cfg),
        }
    with torch.no_grad():  # random routers of a usual size, so that the tokens spread over the experts
        for block in models["Qwen3-MoE (8 experts, 2 active)"].trf_blocks:
            block.ff.gate.weight.normal_(std=0.5)
    return {name: model.eval() for name, model in models.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--plain", action="store_true", help="also time chapter 5's generate (no KV cache)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    dtype = getattr(torch, args.dtype)
    context = args.prompt_tokens + args.new_tokens
    models = build_models(args.size, context, dtype, device)
    prompt = torch.randint(0, 50257, (1, args.prompt_tokens), generator=torch.Generator().manual_seed(1)).to(
        device
    )
    print(
        f"{args.size} shapes {SIZES[args.size]} (emb_dim, n_layers, n_heads), {args.dtype}, {device}, "
        f"{torch.get_num_threads()} threads; batch 1, {args.prompt_tokens}-token prompt, "
        f"{args.new_tokens} new tokens"
    )
    for name, model in models.items():
        print(
            f"  {name:32s} {count_parameters(model) / 1e6:6.1f}M parameters, "
            f"{count_active_parameters(model) / 1e6:6.1f}M active per token"
        )
    generators = {"generate_text_cached (KV cache)": generate_text_cached}
    if args.plain:
        generators["generate (chapter 5, no cache)"] = generate
    for label, fn in generators.items():
        runs = {name: partial(fn, model, prompt, args.new_tokens, context) for name, model in models.items()}
        for run in runs.values():
            run()  # warm-up: first calls allocate and pick kernels
        medians = interleaved_medians(runs, args.reps, device)
        base = medians["GPT-2 (chapter 4)"]
        print(f"\n{label}: tokens/s, and the ratio to GPT-2 (>1 is faster)")
        for name, seconds in medians.items():
            print(f"  {name:32s} {args.new_tokens / seconds:8.1f} tokens/s   {base / seconds:5.2f}x")


if __name__ == "__main__":
    main()
