"""The three commands (pretrain, generate, chat) with a user's mistakes and interruptions (issue 22).

Every mistake is answered before any work starts: exit code 2, one line on stderr that names the option and
what to give instead, no traceback, nothing left on disk. Ctrl-C is a normal way to stop: one line with the
command that resumes, the checkpoints on disk complete. Subprocess tests run the commands as a user does;
the many option checks run in-process (the same main(), without a second's start-up each).
"""

import json
import os
import shlex
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import torch

from ch05_pretraining import generate as generate_command
from ch05_pretraining import pretrain
from ch07_instruct import chat
from shared.export import REPO_ROOT

TINY = ["--emb-dim", "32", "--n-layers", "1", "--n-heads", "2", "--context-length", "32"]
QUIET = [*TINY, "--eval-freq", "50", "--eval-iter", "1", "--no-progress"]


def spawn(argv, cwd, env=None):
    """Run ``python argv`` as a user would: Ctrl-C delivered as in a terminal (a child of a process that
    ignores SIGINT would ignore it too), the usual umask, no input."""

    def as_in_a_terminal():
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.umask(0o022)

    env = {**os.environ, **(env or {})}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, *map(str, argv)],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_in_a_terminal,
    )


def command(module, *args, cwd, env=None):
    return spawn(["-m", module, *args], cwd, env)


def finished(process, timeout=120):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def assert_one_line(err, *parts, prefix="error: "):
    assert err.endswith("\n") and err.count("\n") == 1, err  # one line
    assert err.startswith(prefix) and "Traceback" not in err, err
    for part in parts:
        assert part in err, err


def refused(capsys, main, argv):
    """Run a command's main in-process: it must exit with code 2 and one line; returns that line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert_one_line(err)
    return err


# ---- pretrain: options, --out, --data, --resume -------------------------------------------------------


def test_pretrain_refuses_epochs_0_at_once_and_leaves_no_folder(tmp_path):
    code, out, err = finished(
        command("ch05_pretraining.pretrain", *QUIET, "--epochs", "0", "--out", "a/b", cwd=tmp_path)
    )
    assert code == 2 and out == ""
    assert_one_line(err, "--epochs 0: give a whole number >= 1")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--grad-accum", "0"], "--grad-accum 0: give a whole number >= 1"),
        (["--batch-size", "-2"], "--batch-size -2: give a whole number >= 1"),
        (["--checkpoint-every", "0"], "--checkpoint-every 0: give a whole number >= 1"),
        (["--max-steps", "0"], "--max-steps 0: give a whole number >= 1"),
        (["--lr", "0"], "--lr 0.0: give a number > 0"),
        (["--lr", "nan"], "--lr nan: give a number > 0"),
        (["--train-ratio", "1"], "--train-ratio 1.0: give a number between 0 and 1"),
        (["--drop-rate", "1.5"], "--drop-rate 1.5: give a number from 0 up to 1"),
        (["--device", "tpu"], "--device tpu: not a device PyTorch knows: use cpu, cuda"),
        (["--device", "cuda:99"], "--device cuda:99: this machine has"),
        (["--precision", "fp16", "--device", "cpu"], "--precision fp16 is for CUDA GPUs, not cpu"),
        (["--grad-accum", "500"], "--grad-accum 500: the training split gives only 72 batch(es)"),
        (["--resume"], "--resume: no checkpoint in {out}/checkpoints (no 'latest' file): start without"),
    ],
)
def test_pretrain_refuses_a_bad_option_in_one_line_and_creates_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    err = refused(capsys, pretrain.main, [*QUIET, "--out", str(out), *argv])
    assert message.format(out=out) in err
    assert list(tmp_path.iterdir()) == []


def test_pretrain_refuses_an_empty_or_missing_data_file(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("\n")
    err = refused(
        capsys, pretrain.main, [*QUIET, "--out", str(tmp_path / "run"), "--data", str(tmp_path / "empty.txt")]
    )
    assert f"--data {tmp_path / 'empty.txt'}: the file is empty" in err
    err = refused(
        capsys, pretrain.main, [*QUIET, "--out", str(tmp_path / "run"), "--data", str(tmp_path / "no.txt")]
    )
    assert f"--data {tmp_path / 'no.txt'}: no such text file" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt"]


def test_pretrain_a_missing_data_mirror_is_one_line(tmp_path, capsys, monkeypatch):
    from shared.data import DataError

    def offline(name):
        raise DataError(
            f"Could not get {name!r}. Tried:\n  https://...: no network\nIf this machine is offline, ..."
        )

    monkeypatch.setattr(pretrain, "fetch", offline)
    err = refused(capsys, pretrain.main, [*QUIET, "--out", str(tmp_path / "run")])
    assert "Could not get 'the-verdict.txt'. Tried: https://...: no network If this machine is offline" in err
    assert list(tmp_path.iterdir()) == []


def test_pretrain_out_that_is_a_file_or_under_one(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    for out in (tmp_path / "file", tmp_path / "file" / "run"):
        err = refused(capsys, pretrain.main, [*QUIET, "--out", str(out)])
        assert f"--out {out}: {tmp_path / 'file'} is a file, not a folder: choose another --out" in err


def test_pretrain_out_that_cannot_be_written_fails_within_a_second(tmp_path, capsys, monkeypatch):
    # root writes anywhere on a normal file system: /proc and /sys refuse everyone
    for out, reason in (
        ("/proc/1", "/proc/1: cannot write there ("),
        ("/sys/run", "/sys/run: cannot write there (in /sys"),
    ):
        if not Path(out).parent.is_dir():
            continue
        start = time.perf_counter()
        err = refused(capsys, pretrain.main, [*QUIET, "--out", out])
        assert time.perf_counter() - start < 1.0
        assert f"--out {reason}" in err and "choose a folder you can write to" in err
    # an existing folder that refuses writes (what chmod -w does to a user who is not root)
    existing = tmp_path / "read-only"
    existing.mkdir()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    err = refused(capsys, pretrain.main, [*QUIET, "--out", str(existing)])
    assert (
        f"--out {existing}: cannot write there (Permission denied): choose a folder you can write to" in err
    )
    assert list(existing.iterdir()) == []


def immutable(folder):
    """Make ``folder`` refuse every write, root's too (chattr +i, on ext4 and xfs); False where it can't."""
    try:
        return subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    except OSError:
        return False


def test_pretrain_out_not_writable_as_a_subprocess(tmp_path):
    """An existing folder that cannot be written (immutable where chattr works, else /proc's) is refused
    before any data are read: the run that would have been lost at its first checkpoint never starts."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if not immutable(folder):
        folder = Path("/proc/1")
    try:
        start = time.perf_counter()
        code, out, err = finished(command("ch05_pretraining.pretrain", *QUIET, "--out", folder, cwd=tmp_path))
        elapsed = time.perf_counter() - start
    finally:
        subprocess.run(["chattr", "-i", str(tmp_path / "read-only")], capture_output=True)
    assert code == 2 and out == ""
    assert_one_line(err, f"--out {folder}: cannot write there (", "choose a folder you can write to")
    assert list((tmp_path / "read-only").iterdir()) == []
    print(f"read-only --out refused after {elapsed:.1f} s, Python's start-up included")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny run of 2 optimizer steps with a checkpoint after each (step-000001, step-000002)."""
    out = tmp_path_factory.mktemp("pretrain") / "run"
    argv = [*QUIET, "--out", str(out), "--epochs", "2", "--max-steps", "2", "--checkpoint-every", "1"]
    assert pretrain.main(argv) == 0
    return out


def copy_run(run, tmp_path):
    import shutil

    return Path(shutil.copytree(run, tmp_path / "run"))


def test_a_run_is_not_mixed_with_another_one(finished_run, capsys):
    err = refused(capsys, pretrain.main, [*QUIET, "--out", str(finished_run), "--epochs", "2"])
    assert (
        f"--out {finished_run} already holds a run (its newest checkpoint is step-000002): add --resume"
        in err
    )


def test_resume_keeps_the_options_that_decide_the_batches(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    before = (run / "checkpoints" / "latest").read_text()
    argv = [*QUIET, "--out", str(run), "--epochs", "2", "--resume"]
    err = refused(capsys, pretrain.main, [*argv, "--batch-size", "4", "--lr", "1e-3"])
    assert "--resume: --batch-size 4 instead of --batch-size 2; --lr 0.001 instead of --lr 0.0004" in err
    assert "resume with --batch-size 2, --lr 0.0004" in err
    err = refused(capsys, pretrain.main, [*argv, "--book"])
    assert "--book instead of no --book" in err
    (run / "pretrain.txt").write_text("another text " * 500)
    err = refused(capsys, pretrain.main, [*argv, "--data", str(run / "pretrain.txt")])
    assert "another text in --data than the run's (the-verdict)" in err
    assert (run / "checkpoints" / "latest").read_text() == before


def test_resume_with_another_shape_shows_the_flags(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    (run / "run.json").unlink()  # a run from before run.json: the checkpoint's shape is checked all the same
    argv = [*QUIET, "--out", str(run), "--resume", "--emb-dim", "64", "--no-pad-vocab"]
    err = refused(capsys, pretrain.main, argv)
    assert (
        f"--resume: the checkpoint {run / 'checkpoints' / 'step-000002'} holds a model of another shape"
        in err
    )
    assert "resume with the options the run started with: --emb-dim 32, --pad-vocab" in err
    assert "GPTModel(" not in err


def test_resume_with_more_epochs_says_the_schedule_is_planned_again(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    assert pretrain.main([*QUIET, "--out", str(run), "--epochs", "3", "--max-steps", "3", "--resume"]) == 0
    captured = capsys.readouterr()
    assert_one_line(
        captured.err,
        "--epochs 3 instead of 2: the learning rate's cosine decay is planned again",
        prefix="note: ",
    )
    assert "warmup 28 of 216 steps" in captured.out  # 20% of the 2 x 72 steps the run started with
    assert json.loads((run / "run.json").read_text())["options"]["epochs"] == 3


def test_resume_from_a_damaged_checkpoint_falls_back_to_the_previous_one(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    state = run / "checkpoints" / "step-000002" / "training_state.pt"
    state.write_bytes(state.read_bytes()[:1000])  # cut short (a full disk, a copy interrupted)
    assert pretrain.main([*QUIET, "--out", str(run), "--epochs", "2", "--max-steps", "3", "--resume"]) == 0
    captured = capsys.readouterr()
    assert_one_line(
        captured.err,
        f"the newest checkpoint {state.parent} is damaged (training_state.pt is cut short",
        f"resuming from {run / 'checkpoints' / 'step-000001'}, the previous complete one",
        prefix="note: ",
    )
    assert "2 steps, 128 tokens" in captured.out  # steps 2 and 3 again
    assert (run / "checkpoints" / "latest").read_text() == "step-000003"


def test_generate_names_a_damaged_checkpoint_and_the_previous_one(
    finished_run, tmp_path, capsys, monkeypatch
):
    run = copy_run(finished_run, tmp_path)
    weights = run / "checkpoints" / "step-000002" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    for given in (run, run / "checkpoints"):  # a run's --out is taken for its checkpoints folder
        monkeypatch.setattr(generate_command, "load_model", lambda *a: pytest.fail("loaded a model"))
        err = refused(capsys, generate_command.main, ["--checkpoint", str(given)])
        assert (
            f"--checkpoint: the checkpoint {weights.parent} is damaged (model.safetensors is cut short or "
            f"damaged): the previous one is complete: --checkpoint {run / 'checkpoints' / 'step-000001'}"
        ) in err
    weights.write_bytes((finished_run / "checkpoints" / "step-000002" / "model.safetensors").read_bytes())
    state = weights.parent / "training_state.pt"  # read by load_checkpoint as well
    state.write_bytes(state.read_bytes()[:-100])
    err = refused(capsys, chat.main, ["--checkpoint", str(run)])
    assert f"--checkpoint: the checkpoint {weights.parent} is damaged (training_state.pt is cut short" in err


def test_an_interruption_before_the_first_checkpoint_leaves_nothing(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrain, "train_model", interrupted)
    out = tmp_path / "runs" / "new"
    assert pretrain.main([*QUIET, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert_one_line(
        err, "nothing was saved before the first checkpoint (--checkpoint-every N", prefix="interrupted: "
    )
    assert (
        f"to start again: python -m ch05_pretraining.pretrain {shlex.join([*QUIET, '--out', str(out)])}\n"
        in err
    )
    assert list(tmp_path.iterdir()) == []


# ---- pretrain: Ctrl-C in a subprocess -----------------------------------------------------------------


def resume_from_message(err):
    """The command the interruption's line gives, as an argument list for this Python."""
    argv = shlex.split(err.split("to carry on from it: ", 1)[1])
    assert argv[:3] == ["python", "-m", "ch05_pretraining.pretrain"] and argv[-1] == "--resume"
    return argv[3:]


def test_ctrl_c_during_training_prints_the_resume_command(tmp_path, monkeypatch):
    argv = [*QUIET, "--out", "run", "--epochs", "1", "--checkpoint-every", "2"]
    process = command("ch05_pretraining.pretrain", *argv, cwd=tmp_path)
    latest = tmp_path / "run" / "checkpoints" / "latest"
    deadline = time.monotonic() + 120
    while not latest.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)  # Ctrl-C after the first checkpoint
    code, out, err = finished(process)
    assert code == 130, err
    checkpoint = tmp_path / "run" / "checkpoints" / latest.read_text()
    assert_one_line(
        err, f"the last complete checkpoint is {checkpoint}; to carry on from it: ", prefix="interrupted: "
    )
    assert resume_from_message(err) == [*argv, "--resume"]
    # checkpoints, latest and run.json get the mode a plain open() gives (umask 022), readable by others
    for file in [latest, tmp_path / "run" / "run.json", *checkpoint.iterdir()]:
        assert stat.S_IMODE(file.stat().st_mode) == 0o644, file
    # the printed command carries on to the end (run here in-process, from the same folder)
    monkeypatch.chdir(tmp_path)
    steps = int(latest.read_text().split("-")[1])
    assert pretrain.main([*resume_from_message(err), "--max-steps", str(steps + 2)]) == 0  # 2 more steps
    assert latest.read_text() == f"step-{steps + 2:06d}"


CTRL_C_IN_A_CHECKPOINT_WRITE = textwrap.dedent(
    """
    import os, signal, sys, torch
    real_save = torch.save
    def save(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("step") == 3:  # training_state.pt of step-000004
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while it is being written
        return real_save(obj, f, *args, **kwargs)
    torch.save = save
    from ch05_pretraining import pretrain
    sys.exit(pretrain.main(sys.argv[1:]))
    """
)


def test_ctrl_c_during_a_checkpoint_write_leaves_the_previous_one_and_a_resumable_run(tmp_path, monkeypatch):
    argv = [*QUIET, "--out", "run", "--epochs", "1", "--checkpoint-every", "2", "--max-steps", "6"]
    process = spawn(["-c", CTRL_C_IN_A_CHECKPOINT_WRITE, *argv], cwd=tmp_path)
    code, out, err = finished(process)
    assert code == 130, err
    checkpoints = tmp_path / "run" / "checkpoints"
    assert (checkpoints / "latest").read_text() == "step-000002"  # step-000004 never became the latest
    assert_one_line(
        err, f"the last complete checkpoint is {checkpoints / 'step-000002'}", prefix="interrupted: "
    )
    assert "Traceback" not in err and "enforce fail" not in err
    monkeypatch.chdir(tmp_path)
    assert pretrain.main(resume_from_message(err)) == 0
    assert (checkpoints / "latest").read_text() == "step-000006"


# ---- generate ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--prompt", ""], "--prompt is empty: give the text the model should continue"),
        (["--max-new-tokens", "0"], "--max-new-tokens 0: give a whole number >= 1"),
        (["--top-k", "0"], "--top-k 0: give a whole number >= 1, or leave it out for no limit"),
        (["--temperature", "nan"], "--temperature nan: give a number >= 0"),
        (["--device", "tpu"], "--device tpu: not a device PyTorch knows"),
        (["--device", "cuda:99"], "--device cuda:99: this machine has"),
        (["--checkpoint", "{tmp}/nothing"], "--checkpoint {tmp}/nothing: no such folder"),
        (
            ["--checkpoint", "{tmp}"],
            "--checkpoint {tmp} holds no checkpoint (no model.safetensors, no 'latest' file)",
        ),
    ],
)
def test_generate_refuses_a_bad_option_before_loading_a_model(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.setattr(generate_command, "load_model", lambda *a: pytest.fail("loaded a model"))
    err = refused(capsys, generate_command.main, [a.format(tmp=tmp_path) for a in argv])
    assert message.format(tmp=tmp_path) in err


def test_generate_ctrl_c_ends_quietly(finished_run, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(generate_command, "generate_fast", interrupted)
    assert generate_command.main(["--checkpoint", str(finished_run / "checkpoints")]) == 130
    assert capsys.readouterr().err == ""


def test_gpt2_weights_offline_are_refused_at_once(tmp_path):
    """Neither cached nor in the mirror, and the hub unreachable: the message comes at once, no retries."""
    env = {
        "HF_ENDPOINT": "http://127.0.0.1:9",  # the discard port: nothing listens, the connection is refused
        "HF_HOME": str(tmp_path / "hf"),
        "LLMFS_DATA_MIRROR": str(tmp_path),
        "HF_HUB_OFFLINE": "",
    }
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        env[name] = ""  # no proxy: hub_reachable asks the endpoint itself
    for module, option in (("ch05_pretraining.generate", "--model"), ("ch07_instruct.chat", "--gpt2")):
        start = time.perf_counter()
        code, out, err = finished(command(module, option, "gpt2", "--device", "cpu", cwd=tmp_path, env=env))
        elapsed = time.perf_counter() - start
        assert code == 2 and "Retry" not in err
        assert_one_line(
            err, "could not get the gpt2-small (124M) weights", "set LLMFS_DATA_MIRROR to that folder"
        )
        assert elapsed < 20, f"{module} took {elapsed:.1f} s"


def test_hub_reachable(monkeypatch):
    from shared import data

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert data.hub_reachable(timeout=1) is False
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")  # only the proxy can tell
    assert data.hub_reachable(timeout=1) is True


# ---- chat --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--temperature", "-1"], "--temperature -1.0: give a number >= 0"),
        (["--top-k", "0"], "--top-k 0: give a whole number >= 1"),
        (["--max-new-tokens", "0"], "--max-new-tokens 0: give a whole number >= 1"),
        (["--device", "tpu"], "--device tpu: not a device PyTorch knows"),
        (["--device", "cuda:99"], "--device cuda:99: this machine has"),
    ],
)
def test_chat_refuses_a_bad_option_before_loading_a_model(finished_run, capsys, monkeypatch, argv, message):
    monkeypatch.setattr(chat, "load_model", lambda *a: pytest.fail("loaded a model"))
    err = refused(capsys, chat.main, ["--checkpoint", str(finished_run / "checkpoints"), *argv])
    assert message in err


def test_chat_refuses_a_bad_option_as_a_subprocess(tmp_path):
    code, out, err = finished(
        command("ch07_instruct.chat", "--gpt2", "gpt2", "--temperature", "-1", cwd=tmp_path)
    )
    assert code == 2 and out == ""
    assert_one_line(err, "--temperature -1.0: give a number >= 0")


class Tokenizer:
    def encode(self, text, allowed_special=()):
        return [1] * len(text.split())

    def decode(self, ids):
        return " word" * len(ids)


def test_chat_ctrl_c_stops_the_answer_and_goes_on(monkeypatch):
    def stream(model, tokenizer, entry, **kwargs):
        for i in range(5):
            if entry["instruction"] == "long" and i == 2:
                raise KeyboardInterrupt  # Ctrl-C while the answer is written
            yield f" {entry['instruction']}{i}"

    monkeypatch.setattr(chat, "stream_response", stream)
    written = []
    answers = chat.chat_loop(None, Tokenizer(), ["long", "short"], written.append, prompt="> ")
    assert answers == [" long0 long1", " short0 short1 short2 short3 short4"]
    assert (
        "".join(written) == "> " + " long0 long1 [stopped]\n> " + " short0 short1 short2 short3 short4\n> \n"
    )


def test_chat_ends_with_a_newline_at_ctrl_d_and_quits_at_ctrl_c_on_the_prompt(monkeypatch, capsys):
    monkeypatch.setattr(chat, "stream_response", lambda *a, **k: iter([" hi"]))
    written = []
    chat.chat_loop(None, Tokenizer(), [], written.append, prompt="> ")
    assert written == ["> ", "\n"]  # the shell's prompt starts on its own line

    monkeypatch.setattr(chat, "check_args", lambda args: None)
    monkeypatch.setattr(chat, "load_model", lambda *a: torch.nn.Linear(1, 1))
    monkeypatch.setattr(chat, "gpt2_encoding", Tokenizer)

    class Stdin:
        def isatty(self):
            return False

        def __iter__(self):
            yield "hello"
            raise KeyboardInterrupt  # Ctrl-C while the next line is read

    monkeypatch.setattr(chat.sys, "stdin", Stdin())
    assert chat.main(["--checkpoint", "x", "--device", "cpu", "--precision", "fp32"]) == 0
    captured = capsys.readouterr()
    assert captured.out == " hi\n\n" and captured.err == ""
