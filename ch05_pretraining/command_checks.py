"""Checks the commands (pretrain, generate, chapter 7's chat) make before any work starts, so that a user's
mistake is answered at once, in one line that names the option and what to give instead.

Not exported from a notebook: this is the commands' own code, like the commands themselves.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

MODEL_FILE, STATE_FILE, LATEST_FILE = "model.safetensors", "training_state.pt", "latest"
EXIT_USAGE = 2  # argparse's code for a command line it refuses
EXIT_INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C


def fail(parser, err: Exception | str):
    """Exit with code 2 and one line on stderr: ``error: `` and the message (its lines joined)."""
    message = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    parser.exit(EXIT_USAGE, f"error: {message}\n")


def checkpoint_problem(folder: Path, need_state: bool = True) -> str | None:
    """What is wrong with the checkpoint ``folder`` (a file missing, cut short or damaged), None when its
    files are whole. Reads the files' indexes only (the safetensors header, the zip directory of
    training_state.pt), not the tensors. ``need_state=False``: the weights alone are enough."""
    import safetensors

    files = [folder / MODEL_FILE] + ([folder / STATE_FILE] if need_state else [])
    for file in files:
        if not file.is_file():
            return f"{file.name} is missing"
    try:
        with safetensors.safe_open(str(folder / MODEL_FILE), framework="pt") as f:
            f.metadata()
    except Exception:  # safetensors' own error types for a cut-short or damaged file
        return f"{MODEL_FILE} is cut short or damaged"
    if need_state:
        try:
            with zipfile.ZipFile(folder / STATE_FILE) as z:  # torch.save writes a zip, its index at the end
                z.infolist()
        except (zipfile.BadZipFile, OSError):
            return f"{STATE_FILE} is cut short or damaged"
    return None


def previous_complete(folder: Path, need_state: bool = True) -> Path | None:
    """The newest complete checkpoint beside ``folder`` (a ``step-NNNNNN`` folder) that is older than it."""
    earlier = [f for f in sorted(folder.parent.glob("step-*"), reverse=True) if f.name < folder.name]
    return next((f for f in earlier if checkpoint_problem(f, need_state) is None), None)


def check_checkpoint(path: str | Path, option: str = "--checkpoint") -> Path:
    """The checkpoint folder that ``option`` (a step-NNNNNN folder, a checkpoints folder with a 'latest'
    file, or a pretrain run's --out) names, with its weights whole; otherwise a ValueError that gives the
    full path and what to pass instead (the previous complete checkpoint when the newest is damaged)."""
    full = Path(path).expanduser().absolute()
    if not full.exists():
        raise ValueError(f"{option} {full}: no such folder")
    if not full.is_dir():
        raise ValueError(
            f"{option} {full} is a file: give the folder that holds {MODEL_FILE} (a step-NNNNNN folder) "
            "or a run's checkpoints folder"
        )
    if (full / MODEL_FILE).is_file():
        folder = full
    elif (full / LATEST_FILE).is_file():
        folder = full / (full / LATEST_FILE).read_text(encoding="utf-8").strip()
    elif (full / "checkpoints" / LATEST_FILE).is_file():  # a pretrain run's --out
        return check_checkpoint(full / "checkpoints", option)
    else:
        raise ValueError(
            f"{option} {full} holds no checkpoint (no {MODEL_FILE}, no '{LATEST_FILE}' file): give a "
            "step-NNNNNN folder, or the checkpoints folder of a run (pretrain's --out, then checkpoints)"
        )
    has_state = (folder / STATE_FILE).exists()  # loading the weights reads the training state too
    problem = checkpoint_problem(folder, need_state=has_state)
    if problem:
        good = previous_complete(folder, need_state=has_state)
        instead = f": the previous one is complete: {option} {good}" if good else ""
        raise ValueError(f"{option}: the checkpoint {folder} is damaged ({problem}){instead}")
    return folder


def check_sampling_args(temperature, top_k, max_new_tokens) -> None:
    """--temperature, --top-k and --max-new-tokens of the generating commands."""
    if not temperature >= 0:  # also NaN
        raise ValueError(f"--temperature {temperature}: give a number >= 0 (0: always the most likely token)")
    if top_k is not None and top_k < 1:
        raise ValueError(f"--top-k {top_k}: give a whole number >= 1, or leave it out for no limit")
    if max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens {max_new_tokens}: give a whole number >= 1")


def check_device(name: str | None) -> None:
    """--device (or LLMFS_DEVICE): a device this machine can run (shared.device.device_problem)."""
    from shared.device import device_problem

    device = name or os.environ.get("LLMFS_DEVICE")
    problem = device_problem(device) if device else None
    if problem:
        raise ValueError(f"{'--device ' + device if name else 'LLMFS_DEVICE=' + device}: {problem}")


def offline_answer_at_once() -> None:
    """Before GPT-2's weights are loaded: when the Hugging Face hub cannot be reached, let a missing file
    fail at once (shared.data.hub_offline_unless_reachable) instead of after five retries."""
    from shared.data import hub_offline_unless_reachable

    hub_offline_unless_reachable()
