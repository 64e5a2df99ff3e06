"""The pretraining command's checks of its options, before any work starts, and what it says when a run is
interrupted: each mistake gets one line that names the option (a full path where there is one) and the fix.
The command itself is pretrain.py."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from ch05_pretraining.checkpoints import architecture_mismatch, read_checkpoint_config
from ch05_pretraining.command_checks import (
    check_device,
    checkpoint_problem,
    previous_complete,
)
from shared.files import atomic_write

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
