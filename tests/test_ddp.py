"""The pretraining command under torchrun: two CPU processes (gloo) record the losses of one process with
the same global batch; resuming works; and the command's other paths (--book, the fast defaults)."""

import os
import subprocess
import sys

import pytest
import torch

from ch05_pretraining import pretrain

TINY = ["--emb-dim", "32", "--n-layers", "1", "--n-heads", "2", "--context-length", "32", "--drop-rate", "0"]
RUN = [*TINY, "--epochs", "1", "--eval-freq", "2", "--eval-iter", "2", "--no-progress", "--precision", "fp32"]


def torchrun(nproc, out, *extra, timeout=240):
    if not torch.distributed.is_available():
        pytest.skip("this PyTorch build has no torch.distributed")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
        "-m", "ch05_pretraining.pretrain", *RUN, "--out", str(out), *extra,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def recorded(out):
    folder = out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip()
    state = torch.load(folder / "training_state.pt", weights_only=True)
    return state


def test_two_processes_equal_one_with_the_same_global_batch(tmp_path):
    one = tmp_path / "one"
    two = tmp_path / "two"
    torchrun(1, one, "--batch-size", "4", "--max-steps", "6")
    text_two = torchrun(2, two, "--batch-size", "2", "--max-steps", "6", "--checkpoint-every", "3")
    assert "x 2 processes" in text_two and text_two.count("Ep 1 (Iter 000000)") == 1  # rank 0 prints alone
    a, b = recorded(one), recorded(two)
    assert a["step"] == b["step"] == 5 and a["tokens_seen"] == b["tokens_seen"] == 6 * 4 * 32
    assert a["train_losses"] == pytest.approx(b["train_losses"], abs=1e-5)
    assert a["val_losses"] == pytest.approx(b["val_losses"], abs=1e-5)
    assert a["track_lrs"] == b["track_lrs"]
    # resuming the two-process run from its checkpoint: three more steps, the same as one process
    torchrun(1, one, "--batch-size", "4", "--max-steps", "9", "--resume")
    torchrun(2, two, "--batch-size", "2", "--max-steps", "9", "--resume")
    a, b = recorded(one), recorded(two)
    assert a["step"] == b["step"] == 8
    assert a["val_losses"] == pytest.approx(b["val_losses"], abs=1e-5)


def test_the_book_path_and_the_fast_path(tmp_path, capsys):
    args = [
        *TINY,
        "--eval-freq",
        "4",
        "--eval-iter",
        "1",
        "--no-progress",
        "--epochs",
        "1",
        "--max-steps",
        "4",
    ]
    assert pretrain.main([*args, "--out", str(tmp_path / "book"), "--book"]) == 0
    book = capsys.readouterr().out
    assert "precision" not in book
    assert pretrain.main([*args, "--out", str(tmp_path / "fast"), "--grad-accum", "2"]) == 0
    fast = capsys.readouterr().out
    settings = (
        "precision auto, attention explicit, fused ops True, padded vocab True, fused AdamW, compile False"
    )
    assert settings in fast  # on the CPU
    state = recorded(tmp_path / "fast")
    assert state["tokens_seen"] == 4 * 2 * 2 * 32, "4 steps of 2 batches of 2 x 32 tokens (--grad-accum 2)"
    assert len(state["track_lrs"]) == 4 and state["track_lrs"][0] == 1e-5  # warmup from --initial-lr
