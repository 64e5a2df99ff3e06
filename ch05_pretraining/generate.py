"""Write text with a trained model: from a checkpoint of the pretraining command, or from OpenAI's GPT-2.

    python -m ch05_pretraining.generate --help
    python -m ch05_pretraining.generate --checkpoint runs/pretrain/checkpoints --prompt "Every effort"
    python -m ch05_pretraining.generate --model gpt2-medium --temperature 0.8 --top-k 40 --max-new-tokens 100

It runs chapter 5's exported functions (read_checkpoint_config, load_checkpoint, load_pretrained_gpt2,
generate_fast); this file only reads the options and prints.
"""

from __future__ import annotations

import argparse
import sys
import warnings

import torch

from ch04_gpt.gpt import GPTModel
from ch05_pretraining.checkpoints import load_checkpoint, read_checkpoint_config
from ch05_pretraining.command_checks import (
    EXIT_INTERRUPTED,
    check_checkpoint,
    check_device,
    check_sampling_args,
    fail,
    offline_answer_at_once,
)
from ch05_pretraining.fast_generation import generate_fast
from ch05_pretraining.pretraining import (
    load_pretrained_gpt2,
    text_to_token_ids,
    token_ids_to_text,
)
from shared.data import DataError, gpt2_encoding
from shared.device import add_precision_option, generation_dtype, get_device

END_OF_TEXT = 50256  # GPT-2's <|endoftext|>


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ch05_pretraining.generate",
        description="Generate text from a checkpoint of the pretraining command or from a GPT-2 size.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--checkpoint", help="a checkpoint folder (step-NNNNNN), a run's checkpoints folder, or a run's --out"
    )
    source.add_argument(
        "--model",
        default="124M",
        help="a GPT-2 size (124M, 355M, 774M, 1558M, gpt2-medium, ...), downloaded once; offline, from the "
        "folder LLMFS_DATA_MIRROR names",
    )
    p.add_argument("--prompt", default="Every effort moves you", help="the text to continue (not empty)")
    p.add_argument("--max-new-tokens", type=int, default=50)
    p.add_argument("--temperature", type=float, default=0.0, help="0: always the most likely token")
    p.add_argument("--top-k", type=int, help="sample only among the k most likely tokens")
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--stop-at-eos", action="store_true", help="stop at GPT-2's <|endoftext|> token")
    p.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    add_precision_option(p)
    return p


def check_args(args) -> None:
    """Every option, before a model is loaded (or downloaded): a ValueError in the command's terms."""
    check_sampling_args(args.temperature, args.top_k, args.max_new_tokens)
    if not args.prompt:
        raise ValueError("--prompt is empty: give the text the model should continue, e.g. --prompt 'Hello'")
    check_device(args.device)
    if args.checkpoint:
        args.checkpoint = check_checkpoint(args.checkpoint)


def load_model(args, device: torch.device) -> GPTModel:
    if args.checkpoint:
        model = GPTModel(read_checkpoint_config(args.checkpoint))
        load_checkpoint(args.checkpoint, model)
        return model.to(device).eval()
    offline_answer_at_once()
    return load_pretrained_gpt2(args.model, device=device)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_args(args)
        device = get_device(args.device)
        model = load_model(args, device).to(generation_dtype(device, args.precision))
        tokenizer = gpt2_encoding()
        prompt = text_to_token_ids(args.prompt, tokenizer).to(device)
        torch.manual_seed(args.seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ids = generate_fast(
                model,
                prompt,
                max_new_tokens=args.max_new_tokens,
                context_size=model.cfg["context_length"],
                temperature=args.temperature,
                top_k=args.top_k,
                eos_id=END_OF_TEXT if args.stop_at_eos else None,
            )
    except (ValueError, FileNotFoundError, DataError) as err:
        fail(parser, err)
    except KeyboardInterrupt:  # Ctrl-C: stop quietly, nothing half-written
        if sys.stderr.isatty():
            print(file=sys.stderr)  # the shell's prompt on a line of its own, after the ^C
        return EXIT_INTERRUPTED
    for warning in caught:  # e.g. a prompt longer than the context, cropped
        print(f"note: {warning.message}", file=sys.stderr)
    print(token_ids_to_text(ids.cpu(), tokenizer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
