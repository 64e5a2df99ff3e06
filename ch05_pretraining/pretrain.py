"""Pretrain a GPT model on a text file: chapter 5's training, with appendix D's loop, as a command.

    python -m ch05_pretraining.pretrain --help
    python -m ch05_pretraining.pretrain --out runs/verdict                # the-verdict, the fast settings
    python -m ch05_pretraining.pretrain --out runs/verdict --resume       # carry on from the last checkpoint
    python -m ch05_pretraining.pretrain --out runs/book --book            # the book's chapter 5 settings
    python -m ch05_pretraining.pretrain --data my.txt --emb-dim 256 --n-layers 4 --n-heads 4 --out runs/small
    torchrun --standalone --nproc_per_node 4 -m ch05_pretraining.pretrain --out runs/ddp   # 4 GPUs (DDP)

By default it trains with appendix D's train_model (warmup, cosine decay, clipping) and the fast settings:
the precision the hardware computes natively (bf16, or fp16 with a gradient scaler, else fp32), fused
AdamW with weight decay on the matrices, fused LayerNorm and GELU, the faster attention code for the
device, an output layer padded to 50304 rows, and torch.compile on CUDA; each has a switch.
Started by torchrun, it trains with DistributedDataParallel (NCCL on GPUs, gloo on CPUs): every process
reads its own share of each epoch, and only process 0 prints and writes checkpoints and the plot.

Everything it runs is the notebooks' exported code (create_train_val_loaders, train_model, save_checkpoint,
plot_losses, generate_fast): this file only reads the options and reports. With --book, train_model runs with
the book's chapter 5 settings (constant learning rate, no clipping, fp32), which records exactly the losses
of chapter 5's train_model_simple, and keeps the checkpoints and exact resuming.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from ch04_gpt.gpt import GPTModel, get_gpt_config
from ch05_pretraining.command_checks import (
    EXIT_INTERRUPTED,
    fail,
)
from ch05_pretraining.fast_generation import generate_fast
from ch05_pretraining.pretrain_checks import (
    check_args,
    check_fresh_run,
    check_output_folder,
    check_precision,
    check_resume,
    check_steps,
    first_missing_folder,
    record_run,
    remove_if_no_checkpoint,
    report_interrupt,
    warmup_steps,
)
from ch05_pretraining.pretraining import (
    create_train_val_loaders,
    plot_losses,
    text_to_token_ids,
    token_ids_to_text,
)
from ch05_pretraining.training_extras import PRECISIONS, create_optimizer, distributed_loader, train_model
from shared.data import DataError, fetch, gpt2_encoding
from shared.device import get_device, set_seed
from shared.files import atomic_write


def read_text(path: str | None) -> str:
    """The training text: a UTF-8 file, or the-verdict (fetched like every course file) by default."""
    file = fetch("the-verdict.txt") if path is None else Path(path)
    if not file.is_file():
        what = "a folder, not a text file" if file.is_dir() else "no such text file"
        raise FileNotFoundError(f"--data {file.absolute()}: {what}")
    data = file.read_bytes()
    if not data.strip():
        raise ValueError(f"--data {file.absolute()}: the file is empty: give a file that holds the text")
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
    p.add_argument(
        "--out",
        default="runs/pretrain",
        help="folder for the checkpoints, the loss plot and the run's options (run.json); checked before "
        "anything starts. A checkpoint holds the weights and the optimizer state: 1.9 GB for 124M (650 MB + "
        "1.3 GB); the two newest are kept",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest checkpoint in --out. A resume may change --epochs (the learning "
        "rate's decay is planned again over the new length, with a note), --max-steps, --checkpoint-every, "
        "--eval-freq, --eval-iter, --start-context, --device, --precision, --attention, --fused-ops, "
        "--compile, --no-progress; any other change is refused",
    )
    model = p.add_argument_group("model (a GPT-2 configuration, then overrides)")
    model.add_argument("--config", default="124M", help="124M, 355M, 774M, 1558M, or a book name")
    model.add_argument("--context-length", type=int, default=256, help="the book trains with 256")
    model.add_argument("--emb-dim", type=int)
    model.add_argument("--n-layers", type=int)
    model.add_argument("--n-heads", type=int)
    model.add_argument("--drop-rate", type=float)
    model.add_argument(
        "--tie-weights",
        action="store_true",
        help="one matrix for the token embedding and the output layer, as GPT-2 (124M parameters, not 163M)",
    )
    train = p.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, default=2)
    train.add_argument("--lr", type=float, default=4e-4, help="AdamW learning rate")
    train.add_argument("--weight-decay", type=float, default=0.1)
    train.add_argument("--train-ratio", type=float, default=0.9, help="share of the text used for training")
    train.add_argument("--eval-freq", type=int, default=5, help="evaluate every N steps")
    train.add_argument("--eval-iter", type=int, default=5, help="batches per evaluation")
    train.add_argument(
        "--checkpoint-every",
        type=int,
        help="steps between checkpoints (default: at the end only); Ctrl-C stops the run, and --resume "
        "carries on from the newest checkpoint",
    )
    train.add_argument("--max-steps", type=int, help="stop after N optimizer steps in all")
    train.add_argument("--seed", type=int, default=123)
    train.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    train.add_argument("--start-context", default="Every effort moves you", help="prompt of the samples")
    train.add_argument("--no-progress", action="store_true", help="no progress bar (e.g. in log files)")
    fast = p.add_argument_group("appendix D's loop and the fast settings (ignored with --book)")
    fast.add_argument(
        "--book",
        action="store_true",
        help="the book's chapter 5 run instead: constant learning rate, no clipping, fp32, explicit "
        "attention, AdamW decaying every tensor (train_model_simple's losses, with checkpoints; no torchrun)",
    )
    fast.add_argument(
        "--warmup-steps", type=int, help="(default: 20%% of the optimizer steps, as in the book)"
    )
    fast.add_argument("--initial-lr", type=float, default=1e-5, help="learning rate of the first warmup step")
    fast.add_argument("--min-lr", type=float, default=1e-5, help="learning rate the cosine decay ends at")
    fast.add_argument("--max-norm", type=float, default=1.0, help="gradient clipping norm (0: no clipping)")
    fast.add_argument("--grad-accum", type=int, default=1, help="batches per optimizer step")
    fast.add_argument(
        "--precision", choices=PRECISIONS, default="auto", help="auto: what the device computes fast"
    )
    fast.add_argument(
        "--attention",
        choices=("auto", "sdpa", "explicit"),
        default="auto",
        help="sdpa: PyTorch's fused kernel; explicit: chapter 3's code; auto: sdpa on GPUs, explicit on the "
        "CPU, where its matrix products train faster with bf16 (bench/bench_train.py)",
    )
    fast.add_argument(
        "--fused-ops",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="LayerNorm and GELU through PyTorch's one-kernel functions (chapter 4's fused_ops)",
    )
    fast.add_argument(
        "--pad-vocab",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="chapter 4's padded_vocab_size: the output layer computes scores for a multiple of 128 tokens "
        "(50304 for GPT-2's 50257) and the model drops the extra ones; faster on GPUs and CPUs. It changes "
        "the checkpoint's shapes: resume with the same choice",
    )
    fast.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile the training steps (default: on CUDA only; compiling takes a while on a CPU)",
    )
    fast.add_argument(
        "--fused-adamw",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="create_optimizer's AdamW (fused, weight decay on matrices only); --no-fused-adamw: the book's",
    )
    return p


def fast_attention(device: torch.device) -> str:
    """The attention code that trains faster on ``device`` (bench/bench_train.py): PyTorch's fused kernel on
    GPUs; on the CPU chapter 3's explicit code, whose matrix products run faster there in bf16."""
    return "explicit" if device.type == "cpu" else "sdpa"


def start_distributed(device_name: str | None) -> tuple[torch.device, int, int]:
    """Join the process group when torchrun started this process (it sets WORLD_SIZE, RANK, LOCAL_RANK):
    NCCL between GPUs, one GPU per process; gloo between CPU processes. Returns (device, rank, world size)."""
    if "WORLD_SIZE" not in os.environ:
        return get_device(device_name), 0, 1
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = get_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device, dist.get_rank(), dist.get_world_size()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
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
    if args.tie_weights:
        overrides["tie_weights"] = True
    if args.book and "WORLD_SIZE" in os.environ:
        parser.exit(2, "error: --book runs the book's single-process loop; start it without torchrun\n")
    out = Path(args.out)
    try:  # before anything is read, built or written
        check_args(args)
        check_output_folder(out)
    except ValueError as err:
        fail(parser, err)
    created = first_missing_folder(out)
    device, rank, world_size = start_distributed(args.device)
    if not args.book:
        if args.attention == "auto":
            args.attention = fast_attention(device)
        overrides["attn_impl"] = args.attention
        overrides["fused_ops"] = args.fused_ops
    is_main = rank == 0
    try:
        return _run(parser, args, overrides, device, rank, world_size, is_main)
    except KeyboardInterrupt:  # Ctrl-C: a normal way to stop; the checkpoints on disk are all complete
        if is_main:
            report_interrupt(out, argv)
            remove_if_no_checkpoint(created, out)
        return EXIT_INTERRUPTED
    except SystemExit:
        if is_main:
            remove_if_no_checkpoint(created, out)
        raise
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def _run(parser, args, overrides, device, rank, world_size, is_main) -> int:
    say = print if is_main else (lambda *a, **k: None)
    try:
        cfg = get_gpt_config(args.config, **overrides)
        if args.pad_vocab and not args.book:  # output rows for a multiple of 128 tokens (50304 for 50257)
            cfg["padded_vocab_size"] = -(-cfg["vocab_size"] // 128) * 128
        text = read_text(args.data)
        args.data_sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()  # for run.json and --resume
        out = Path(args.out)
        notes = check_resume(args, out, cfg, world_size, is_main) if args.resume else check_fresh_run(out)
        for note in notes if is_main else ():
            print(note, file=sys.stderr)
        check_precision(args, device)
        set_seed(args.seed)
        model = GPTModel(cfg).to(device)  # the same initial weights in every process
        train_loader, val_loader = create_train_val_loaders(
            text, cfg["context_length"], batch_size=args.batch_size, train_ratio=args.train_ratio
        )
        if world_size > 1 or "WORLD_SIZE" in os.environ:
            train_loader = distributed_loader(train_loader, shuffle=True, seed=args.seed)
            val_loader = distributed_loader(val_loader, shuffle=False)
            torch.manual_seed(args.seed + rank)  # different dropout masks in every process
        if args.book or not args.fused_adamw:
            optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
        else:
            optimizer = create_optimizer(model, lr=args.lr, weight_decay=args.weight_decay)
        tokenizer = gpt2_encoding()
        check_steps(args, train_loader)
        if is_main:  # everything is checked: only now is anything written
            out.mkdir(parents=True, exist_ok=True)
            record_run(args, out, world_size)
        steps_per_epoch = len(train_loader) // (1 if args.book else args.grad_accum)
        batch = args.batch_size * world_size * (1 if args.book else args.grad_accum)
        say(
            f"{sum(p.numel() for p in model.parameters()):,} parameters on {device}"
            + (f" x {world_size} processes" if world_size > 1 else "")
            + f"; {steps_per_epoch} steps per epoch of {batch} x {cfg['context_length']} tokens, "
            f"{len(val_loader)} validation batches"
        )
        steps_before = steps_taken(out / "checkpoints") if args.resume else 0
        common = {
            "eval_freq": args.eval_freq,
            "eval_iter": args.eval_iter,
            "start_context": args.start_context,
            "tokenizer": tokenizer,
            "checkpoint_dir": out / "checkpoints",
            "checkpoint_every": args.checkpoint_every,
            "resume": args.resume,
            "max_steps": args.max_steps,
            "progress": not args.no_progress,
        }
        start = time.perf_counter()
        if args.book:  # chapter 5's: a constant learning rate, no clipping (train_model_simple's losses)
            settings = {"warmup_steps": 1, "initial_lr": args.lr, "min_lr": args.lr, "max_norm": None}
        else:
            total_steps = args.epochs * steps_per_epoch
            warmup = warmup_steps(args, steps_per_epoch)
            compile_model = device.type == "cuda" if args.compile is None else args.compile
            if device.type == "cuda":
                torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls on tensor cores (TF32)
                torch.backends.cudnn.allow_tf32 = True
            say(
                f"precision {args.precision}, attention {args.attention}, fused ops {args.fused_ops}, "
                f"padded vocab {args.pad_vocab}, {'fused AdamW' if args.fused_adamw else 'AdamW'}, "
                f"compile {compile_model}, "
                f"warmup {warmup} of {total_steps} steps, clipping at {args.max_norm or 'none'}"
            )
            settings = {
                "warmup_steps": warmup,
                "initial_lr": args.initial_lr,
                "min_lr": args.min_lr,
                "max_norm": args.max_norm or None,
                "precision": args.precision,
                "grad_accum_steps": args.grad_accum,
                "compile_model": compile_model,
            }
        train_losses, val_losses, tokens_seen, _ = train_model(
            model, train_loader, val_loader, optimizer, device, n_epochs=args.epochs, **settings, **common
        )
    except (ValueError, FileNotFoundError, DataError) as err:
        fail(parser, err)
    if not is_main:
        return 0
    elapsed = time.perf_counter() - start
    steps = steps_taken(out / "checkpoints") - steps_before
    tokens = steps * batch * cfg["context_length"]
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
    ids = generate_fast(
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
