"""Pretrain a GPT model on a text file: chapter 5's training, with appendix D's loop, as a command.

    python -m ch05_pretraining.pretrain --help
    python -m ch05_pretraining.pretrain --out runs/verdict                # the-verdict, the fast settings
    python -m ch05_pretraining.pretrain --out runs/verdict --resume       # carry on from the last checkpoint
    python -m ch05_pretraining.pretrain --out runs/book --book            # the book's train_model_simple run
    python -m ch05_pretraining.pretrain --data my.txt --emb-dim 256 --n-layers 4 --n-heads 4 --out runs/small
    torchrun --standalone --nproc_per_node 4 -m ch05_pretraining.pretrain --out runs/ddp   # 4 GPUs (DDP)

By default it trains with appendix D's train_model (warmup, cosine decay, clipping) and the fast settings:
the precision the hardware computes natively (bf16, or fp16 with a gradient scaler, else fp32), fused
AdamW with weight decay on the matrices, fused LayerNorm and GELU, the faster attention code for the
device, an output layer padded to 50304 rows, and torch.compile on CUDA; each has a switch.
Started by torchrun, it trains with DistributedDataParallel (NCCL on GPUs, gloo on CPUs): every process
reads its own share of each epoch, and only process 0 prints and writes checkpoints and the plot.

Everything it runs is the notebooks' exported code (create_train_val_loaders, train_model_simple,
train_model, save_checkpoint, plot_losses, generate): this file only reads the options and reports.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

from ch04_gpt.gpt import GPTModel, get_gpt_config
from ch05_pretraining.command_checks import (
    EXIT_INTERRUPTED,
    check_device,
    checkpoint_problem,
    fail,
    previous_complete,
)
from ch05_pretraining.pretraining import (
    architecture_mismatch,
    create_train_val_loaders,
    generate,
    plot_losses,
    read_checkpoint_config,
    text_to_token_ids,
    token_ids_to_text,
    train_model_simple,
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


COMMAND = "python -m ch05_pretraining.pretrain"
RUN_FILE = "run.json"  # the options a run started with, compared on --resume

# Options a resume must keep: they decide the data order, the batches, the optimizer or the learning rate
# at every step. The others (--epochs, --max-steps, --checkpoint-every, --eval-freq, --eval-iter,
# --start-context, --device, --precision, --attention, --fused-ops, --compile, --no-progress) may change.
RESUME_FIXED = (
    "config", "context_length", "emb_dim", "n_layers", "n_heads", "drop_rate", "tie_weights", "pad_vocab",
    "batch_size", "lr", "weight_decay", "train_ratio", "seed", "book", "warmup_steps", "initial_lr",
    "min_lr", "max_norm", "grad_accum", "fused_adamw",
)  # fmt: skip
POSITIVE = ("epochs", "batch_size", "eval_freq", "eval_iter", "grad_accum", "context_length")
POSITIVE_OR_UNSET = ("emb_dim", "n_layers", "n_heads", "checkpoint_every", "max_steps", "warmup_steps")
NEGATABLE = ("fused_ops", "pad_vocab", "compile", "fused_adamw")  # --x / --no-x
# what to pass to get a checkpoint's architecture back, for each key architecture_mismatch compares
ARCHITECTURE_FLAGS = {
    "context_length": lambda v: f"--context-length {v}",
    "emb_dim": lambda v: f"--emb-dim {v}",
    "n_heads": lambda v: f"--n-heads {v}",
    "n_layers": lambda v: f"--n-layers {v}",
    "tie_weights": lambda v: "--tie-weights" if v else "no --tie-weights",
    "padded_vocab_size": lambda v: "--pad-vocab" if v else "--no-pad-vocab",
    "vocab_size": lambda v: "the --config it started with",
    "qkv_bias": lambda v: "the --config it started with",
}


def flag(name: str, value) -> str:
    """An option as it is typed: ``--batch-size 4``, ``--book``, ``--no-fused-ops``, ``no --book``."""
    option = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        if value:
            return option
        return f"--no-{option[2:]}" if name in NEGATABLE else f"no {option}"
    return option if value is None else f"{option} {value}"


def check_args(args) -> None:
    """Every option on its own, before anything is read, built or written: a ValueError in the command's
    terms (the flag, the value, what to give instead)."""
    for name in POSITIVE + POSITIVE_OR_UNSET:
        value = getattr(args, name)
        if (value is not None or name in POSITIVE) and not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{flag(name, value)}: give a whole number >= 1")
    for name, low, high, what in (
        ("lr", 0, None, "> 0"),
        ("weight_decay", 0, None, ">= 0"),
        ("initial_lr", 0, None, ">= 0"),
        ("min_lr", 0, None, ">= 0"),
        ("max_norm", 0, None, ">= 0 (0: no clipping)"),
        ("train_ratio", 0, 1, "between 0 and 1 (both excluded)"),
        ("drop_rate", 0, 1, "from 0 up to 1 (1 excluded)"),
    ):
        value = getattr(args, name)
        if value is None:
            continue
        ok = value == value and value >= low and (high is None or value < high)  # value == value: not NaN
        if ok and ((name == "lr" and value == 0) or (name == "train_ratio" and value == 0)):
            ok = False
        if not ok:
            raise ValueError(f"{flag(name, value)}: give a number {what}")
    check_device(args.device)


def check_output_folder(out: Path) -> None:
    """That ``out`` (--out) is a folder this process can create and write in, found out before any data
    are read or any model built: it writes and removes a probe file in the folder or, when the folder does
    not exist yet, in the nearest folder above it that does. Creates nothing."""
    full = out.absolute()
    existing = full
    while not existing.exists() and existing != existing.parent:  # also False below a file (ENOTDIR)
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"--out {full}: {existing} is a file, not a folder: choose another --out")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".pretrain-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        where = "" if existing == full else f" (in {existing}, where it would be created)"
        reason = err.strerror or type(err).__name__
        raise ValueError(
            f"--out {full}: cannot write there{where} ({reason}): choose a folder you can write to"
        ) from None


def check_precision(args, device) -> None:
    """--precision fp16 needs a CUDA GPU (its gradient scaler); found out before the model is built."""
    if not args.book and args.precision == "fp16" and device.type != "cuda":
        raise ValueError(f"--precision fp16 is for CUDA GPUs, not {device.type}: use bf16, fp32 or auto")


def check_steps(args, train_loader) -> None:
    """One optimizer step needs --grad-accum batches: the training split must hold that many."""
    if not args.book and len(train_loader) < args.grad_accum:
        raise ValueError(
            f"--grad-accum {args.grad_accum}: the training split gives only {len(train_loader)} batch(es) of "
            f"--batch-size {args.batch_size} per epoch: use --grad-accum {len(train_loader)} or less"
        )


def check_fresh_run(out: Path) -> list[str]:
    """A run without --resume must not write into the checkpoints of another run (they would mix)."""
    latest = out / "checkpoints" / "latest"
    if latest.is_file():
        raise ValueError(
            f"--out {out.absolute()} already holds a run (its newest checkpoint is "
            f"{latest.read_text(encoding='utf-8').strip()}): add --resume to continue it, or choose "
            "another --out"
        )
    return []


def check_resume(args, out: Path, cfg: dict, world_size: int, is_main: bool = True) -> list[str]:
    """What --resume needs, checked before anything is loaded: a checkpoint in --out (a damaged newest one
    is replaced by the previous complete one, with a note), a model of the options' shape, and the options
    the run started with (RUN_FILE) for everything a resume must keep. Returns notes to print."""
    checkpoints = (out / "checkpoints").absolute()
    latest = checkpoints / "latest"
    if not latest.is_file():
        raise ValueError(
            f"--resume: no checkpoint in {checkpoints} (no 'latest' file): start without --resume, or give "
            "the --out of the run to continue"
        )
    notes = []
    folder = checkpoints / latest.read_text(encoding="utf-8").strip()
    problem = checkpoint_problem(folder)
    if problem:
        good = previous_complete(folder)
        if good is None:
            raise ValueError(
                f"--resume: the checkpoint {folder} is damaged ({problem}) and there is no earlier "
                f"complete one: start again without --resume in another --out"
            )
        notes.append(
            f"note: the newest checkpoint {folder} is damaged ({problem}); resuming from {good}, "
            "the previous complete one"
        )
        folder = good
    run_file = out / RUN_FILE
    if run_file.is_file():  # (a run from before RUN_FILE was written has only its shape to check)
        notes += check_options(args, json.loads(run_file.read_text(encoding="utf-8")), world_size)
    check_shape(folder, cfg)
    if problem and is_main:  # all checked: the previous complete checkpoint becomes the newest
        with atomic_write(latest, mode="w", encoding="utf-8") as f:
            f.write(folder.name)
    return notes


def check_options(args, started: dict, world_size: int) -> list[str]:
    """--resume: the options a resume must keep (RESUME_FIXED) are those the run started with (``started``,
    read from RUN_FILE). Returns a note when --epochs changes the learning rate's schedule."""
    options, notes = started["options"], []
    changed = [
        f"{flag(name, getattr(args, name))} instead of {flag(name, options[name])}"
        for name in RESUME_FIXED
        if name in options and getattr(args, name) != options[name]
    ]
    if started.get("processes", 1) != world_size:
        changed.append(f"{world_size} process(es) instead of {started['processes']}")
    if started.get("data_sha256") not in (None, args.data_sha256):
        changed.append(f"another text in --data than the run's ({started.get('data') or 'the-verdict'})")
    if changed:
        keep = ", ".join(
            flag(name, options[name])
            for name in RESUME_FIXED
            if name in options and getattr(args, name) != options[name]
        )
        raise ValueError(
            f"--resume: {'; '.join(changed)}: a resumed run keeps the batches, the optimizer and the "
            f"learning rate of the run it continues{': resume with ' + keep if keep else ''}"
        )
    if args.epochs != options["epochs"] and not args.book:
        notes.append(
            f"note: --epochs {args.epochs} instead of {options['epochs']}: the learning rate's cosine decay "
            f"is planned again, to end after epoch {args.epochs}; the warmup keeps its length"
        )
    if args.warmup_steps is None:  # the default warmup: 20% of the steps of the epochs the run started with
        args.warmup_epochs = started.get("warmup_epochs", options["epochs"])
    return notes


def check_shape(folder: Path, cfg: dict) -> None:
    """The model the options describe must have the shape of the checkpoint's (the flags that give it)."""
    saved_cfg = read_checkpoint_config(folder)
    mismatch = architecture_mismatch(saved_cfg, cfg)
    if mismatch:
        keys = [key for key in ARCHITECTURE_FLAGS if architecture_mismatch(saved_cfg, cfg, keys=(key,))]
        fix = ", ".join(dict.fromkeys(ARCHITECTURE_FLAGS[key](saved_cfg.get(key)) for key in keys))
        raise ValueError(
            f"--resume: the checkpoint {folder} holds a model of another shape ({mismatch}): resume "
            f"with the options the run started with: {fix}"
        )


def warmup_steps(args, steps_per_epoch: int) -> int:
    """--warmup-steps, or by default 20% of the optimizer steps (of the epochs the run started with)."""
    if args.warmup_steps is not None:
        return args.warmup_steps
    return max(1, int(0.2 * getattr(args, "warmup_epochs", args.epochs) * steps_per_epoch))


def record_run(args, out: Path, world_size: int) -> None:
    """Write the options the run started with into --out (RUN_FILE), for check_resume."""
    options = {name: getattr(args, name) for name in (*RESUME_FIXED, "epochs")}
    record = {
        "command": COMMAND,
        "options": options,
        "processes": world_size,
        "warmup_epochs": getattr(args, "warmup_epochs", args.epochs),
        "data": None if args.data is None else str(Path(args.data).absolute()),
        "data_sha256": args.data_sha256,
    }
    with atomic_write(out / RUN_FILE, mode="w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)


def rerun_command(argv: list[str], resume: bool = True) -> str:
    """The command line that continues this run (the same options, with --resume) or starts it again."""
    if "WORLD_SIZE" in os.environ:
        return "the same torchrun command" + (" with --resume" if resume else "")
    argv = [a for a in argv if a != "--resume"] + (["--resume"] if resume else [])
    return f"{COMMAND} {shlex.join(argv)}"


def report_interrupt(out: Path, argv: list[str]) -> None:
    """One line on stderr after Ctrl-C: the newest complete checkpoint and the command that resumes."""
    latest = out / "checkpoints" / "latest"
    if latest.is_file():
        folder = (out / "checkpoints").absolute() / latest.read_text(encoding="utf-8").strip()
        message = f"the last complete checkpoint is {folder}; to carry on from it: {rerun_command(argv)}"
    else:
        message = (
            "nothing was saved before the first checkpoint (--checkpoint-every N saves one every N steps); "
            f"to start again: {rerun_command(argv, resume=False)}"
        )
    start = "\n" if sys.stderr.isatty() else ""  # in a terminal: below the progress bar and the ^C
    print(f"{start}interrupted: {message}", file=sys.stderr)


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
        help="the book's chapter 5 run instead: train_model_simple, fp32, explicit attention, AdamW decaying "
        "every tensor, constant learning rate (no torchrun)",
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


def first_missing_folder(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (what creating it would add), or None."""
    path, missing = path.absolute(), None
    while not path.exists() and path != path.parent:
        path, missing = path.parent, path
    return missing


def remove_if_no_checkpoint(created: Path | None, out: Path) -> None:
    """After a run that saved no checkpoint, remove the folders it created for --out (nothing to keep)."""
    if created is not None and created.is_dir() and not (out / "checkpoints" / "latest").is_file():
        shutil.rmtree(created, ignore_errors=True)


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
        if args.book:
            train_losses, val_losses, tokens_seen = train_model_simple(
                model, train_loader, val_loader, optimizer, device, num_epochs=args.epochs, **common
            )
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
            train_losses, val_losses, tokens_seen, _ = train_model(
                model,
                train_loader,
                val_loader,
                optimizer,
                device,
                n_epochs=args.epochs,
                warmup_steps=warmup,
                initial_lr=args.initial_lr,
                min_lr=args.min_lr,
                max_norm=args.max_norm or None,
                precision=args.precision,
                grad_accum_steps=args.grad_accum,
                compile_model=compile_model,
                **common,
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
