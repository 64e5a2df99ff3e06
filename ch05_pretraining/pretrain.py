"""Pretrain a GPT model on a text file: chapter 5's training loop as a command.

    python -m ch05_pretraining.pretrain --help
    python -m ch05_pretraining.pretrain --out runs/verdict                # the book's run on the-verdict
    python -m ch05_pretraining.pretrain --out runs/verdict --resume       # carry on from the last checkpoint
    python -m ch05_pretraining.pretrain --data my.txt --emb-dim 256 --n-layers 4 --n-heads 4 --out runs/small

Everything it runs is chapter 5's exported code (create_train_val_loaders, train_model_simple,
save_checkpoint, plot_losses, generate): this file only reads the options and reports.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from ch04_gpt.gpt import GPTModel, get_gpt_config
from ch05_pretraining.pretraining import (
    create_train_val_loaders,
    generate,
    plot_losses,
    text_to_token_ids,
    token_ids_to_text,
    train_model_simple,
)
from shared.data import fetch, gpt2_encoding
from shared.device import get_device, set_seed
from shared.files import atomic_write


def read_text(path: str | None) -> str:
    """The training text: a UTF-8 file, or the-verdict (fetched like every course file) by default."""
    file = fetch("the-verdict.txt") if path is None else Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no such text file: {path}")
    data = file.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{file.name} is not UTF-8 text (byte {data[err.start]:#04x} at position {err.start:,}): "
            "convert it first, e.g. iconv -f latin1 -t utf-8"
        ) from None


def steps_taken(checkpoint_dir: Path) -> int:
    """Optimizer steps behind the newest checkpoint in ``checkpoint_dir`` (its folder is named by them)."""
    latest = checkpoint_dir / "latest"
    return int(latest.read_text(encoding="utf-8").strip().split("-")[1]) if latest.is_file() else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ch05_pretraining.pretrain",
        description="Pretrain a GPT model on a UTF-8 text file (chapter 5), with checkpoints and resuming.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data", help="UTF-8 text file to train on (default: the-verdict.txt, as in the book)")
    p.add_argument("--out", default="runs/pretrain", help="folder for checkpoints and the loss plot")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    model = p.add_argument_group("model (a GPT-2 configuration, then overrides)")
    model.add_argument("--config", default="124M", help="124M, 355M, 774M, 1558M, or a book name")
    model.add_argument("--context-length", type=int, default=256, help="the book trains with 256")
    model.add_argument("--emb-dim", type=int)
    model.add_argument("--n-layers", type=int)
    model.add_argument("--n-heads", type=int)
    model.add_argument("--drop-rate", type=float)
    train = p.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, default=2)
    train.add_argument("--lr", type=float, default=4e-4, help="AdamW learning rate")
    train.add_argument("--weight-decay", type=float, default=0.1)
    train.add_argument("--train-ratio", type=float, default=0.9, help="share of the text used for training")
    train.add_argument("--eval-freq", type=int, default=5, help="evaluate every N steps")
    train.add_argument("--eval-iter", type=int, default=5, help="batches per evaluation")
    train.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default: at the end)")
    train.add_argument("--max-steps", type=int, help="stop after N optimizer steps in all")
    train.add_argument("--seed", type=int, default=123)
    train.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    train.add_argument("--start-context", default="Every effort moves you", help="prompt of the samples")
    train.add_argument("--no-progress", action="store_true", help="no progress bar (e.g. in log files)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = {
        key: value
        for key, value in {
            "context_length": args.context_length,
            "emb_dim": args.emb_dim,
            "n_layers": args.n_layers,
            "n_heads": args.n_heads,
            "drop_rate": args.drop_rate,
        }.items()
        if value is not None
    }
    try:
        cfg = get_gpt_config(args.config, **overrides)
        text = read_text(args.data)
        device = get_device(args.device)
        set_seed(args.seed)
        model = GPTModel(cfg).to(device)
        train_loader, val_loader = create_train_val_loaders(
            text, cfg["context_length"], batch_size=args.batch_size, train_ratio=args.train_ratio
        )
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
        tokenizer = gpt2_encoding()
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        print(
            f"{sum(p.numel() for p in model.parameters()):,} parameters on {device}; "
            f"{len(train_loader)} training and {len(val_loader)} validation batches of "
            f"{args.batch_size} x {cfg['context_length']} tokens"
        )
        steps_before = steps_taken(out / "checkpoints") if args.resume else 0
        start = time.perf_counter()
        train_losses, val_losses, tokens_seen = train_model_simple(
            model,
            train_loader,
            val_loader,
            optimizer,
            device,
            num_epochs=args.epochs,
            eval_freq=args.eval_freq,
            eval_iter=args.eval_iter,
            start_context=args.start_context,
            tokenizer=tokenizer,
            checkpoint_dir=out / "checkpoints",
            checkpoint_every=args.checkpoint_every,
            resume=args.resume,
            max_steps=args.max_steps,
            progress=not args.no_progress,
        )
    except (ValueError, FileNotFoundError) as err:
        parser.exit(2, f"error: {err}\n")
    elapsed = time.perf_counter() - start
    steps = steps_taken(out / "checkpoints") - steps_before
    tokens = steps * args.batch_size * cfg["context_length"]
    speed = tokens / elapsed if elapsed > 0 else float("nan")
    print(f"{steps} steps, {tokens:,} tokens in {elapsed:.1f} s: {speed:,.0f} tokens/s, evaluation included")
    if not train_losses:
        print("no losses recorded: the checkpoint had already reached the requested epochs or steps")
        return 0
    print(f"last recorded losses: training {train_losses[-1]:.3f}, validation {val_losses[-1]:.3f}")

    epochs_seen = torch.linspace(0, args.epochs, len(train_losses)).tolist()
    fig = plot_losses(epochs_seen, tokens_seen, train_losses, val_losses)
    with atomic_write(out / "loss.png") as f:
        fig.savefig(f, format="png", dpi=120)
    print(f"loss plot: {out / 'loss.png'}; checkpoints: {out / 'checkpoints'}")

    model.eval()
    torch.manual_seed(args.seed)
    ids = generate(
        model,
        text_to_token_ids(args.start_context, tokenizer).to(device),
        max_new_tokens=40,
        context_size=cfg["context_length"],
        temperature=1.0,
        top_k=25,
    )
    print("sample (temperature 1.0, top-k 25):", token_ids_to_text(ids.cpu(), tokenizer).replace("\n", " "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
