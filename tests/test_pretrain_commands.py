"""The chapter-5 commands end to end, on a tiny configuration: pretrain, resume, generate."""

import subprocess
import sys

import pytest
import torch

from ch05_pretraining import checkpoints, fast_generation, pretrain
from ch05_pretraining import generate as generate_command
from ch05_pretraining import pretraining as pretraining_module
from ch05_pretraining.pretraining import gpt_to_gpt2_state_dict

TINY = ["--emb-dim", "32", "--n-layers", "1", "--n-heads", "2", "--context-length", "32"]


def run_pretrain(out, *extra):
    return pretrain.main(
        [*TINY, "--out", str(out), "--eval-freq", "4", "--eval-iter", "1", "--no-progress", *extra]
    )


def test_help_of_both_commands():
    for module in ("ch05_pretraining.pretrain", "ch05_pretraining.generate"):
        result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True)
        assert result.returncode == 0 and "usage: python -m " + module in result.stdout
        if module.endswith("pretrain"):  # the disk space checkpoints take, and what a resume may change
            text = " ".join(result.stdout.split())
            assert "1.9 GB for 124M" in text and "the two newest are kept" in text
            assert "A resume may change --epochs" in text


def test_pretrain_resume_and_generate(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_pretrain(out, "--epochs", "2", "--max-steps", "6") == 0
    first = capsys.readouterr().out
    assert "6 steps, 384 tokens" in first and "tokens/s" in first
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "checkpoints" / "latest").read_text() == "step-000006"

    assert run_pretrain(out, "--epochs", "2", "--max-steps", "9", "--resume") == 0
    assert "3 steps, 192 tokens" in capsys.readouterr().out
    assert (out / "checkpoints" / "latest").read_text() == "step-000009"

    assert generate_command.main(["--checkpoint", str(out / "checkpoints"), "--max-new-tokens", "5"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Every effort moves you") and len(text) > len("Every effort moves you")


def test_pretrain_fast_settings_reach_the_model(tmp_path, capsys):
    assert run_pretrain(tmp_path / "auto", "--max-steps", "1", "--device", "cpu") == 0
    assert "attention explicit, fused ops True" in capsys.readouterr().out
    cfg = checkpoints.read_checkpoint_config(tmp_path / "auto" / "checkpoints")
    # on the CPU: chapter 3's explicit attention (faster to train there), fused LayerNorm and GELU, untied,
    # 50304 = 393 x 128 output rows
    assert cfg["attn_impl"] == "explicit" and cfg["fused_ops"] is True and not cfg.get("tie_weights")
    assert cfg["padded_vocab_size"] == 50304
    argv = ["--max-steps", "1", "--attention", "sdpa", "--no-fused-ops", "--tie-weights", "--no-pad-vocab"]
    assert run_pretrain(tmp_path / "chosen", *argv) == 0
    cfg = checkpoints.read_checkpoint_config(tmp_path / "chosen" / "checkpoints")
    assert cfg["attn_impl"] == "sdpa" and cfg["fused_ops"] is False and cfg["tie_weights"] is True
    assert cfg.get("padded_vocab_size") is None
    assert run_pretrain(tmp_path / "book", "--max-steps", "1", "--book") == 0
    cfg = checkpoints.read_checkpoint_config(tmp_path / "book" / "checkpoints")
    assert cfg.get("attn_impl", "explicit") == "explicit" and not cfg.get("fused_ops")
    assert cfg.get("padded_vocab_size") is None


def test_generate_from_a_gpt2_size(tmp_path, monkeypatch, capsys):
    from ch04_gpt.gpt import GPTModel, get_gpt_config

    torch.manual_seed(0)  # a random model with GPT-2 124M's shapes, written in GPT-2's file format
    weights = tmp_path / "model.safetensors"
    import safetensors.torch

    safetensors.torch.save_file(
        gpt_to_gpt2_state_dict(GPTModel(get_gpt_config("124M", qkv_bias=True))), weights
    )
    monkeypatch.setattr(pretraining_module, "download_gpt2_weights", lambda name: weights)
    args = [
        "--model",
        "gpt2",
        "--prompt",
        "Hello",
        "--max-new-tokens",
        "3",
        "--temperature",
        "1",
        "--top-k",
        "5",
    ]
    assert generate_command.main(args) == 0
    assert capsys.readouterr().out.startswith("Hello")


@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_generate_keeps_the_weights_in_the_precision_asked_for(
    tmp_path, monkeypatch, capsys, precision, dtype
):
    out = tmp_path / "run"
    assert run_pretrain(out, "--max-steps", "2") == 0
    capsys.readouterr()  # the training run's report
    seen = []

    def recording_generate(model, *args, **kwargs):
        seen.append(next(model.parameters()).dtype)
        return fast_generation.generate_fast(model, *args, **kwargs)

    monkeypatch.setattr(generate_command, "generate_fast", recording_generate)
    argv = ["--checkpoint", str(out / "checkpoints"), "--max-new-tokens", "3", "--precision", precision]
    assert generate_command.main(argv) == 0
    assert seen == [dtype]
    assert capsys.readouterr().out.startswith("Every effort moves you")


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--config", "gpt5"], "unknown GPT-2 configuration 'gpt5'"),
        (["--context-length", "4096"], "too short for one window of context_length 4,096"),
        (["--data", "missing.txt"], "no such text file"),
        (["--batch-size", "500"], "fewer than one batch of 500"),
    ],
)
def test_pretrain_errors_are_one_readable_line(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        run_pretrain(tmp_path / "run", *argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_a_file_that_is_not_utf8(tmp_path, capsys):
    data = tmp_path / "latin1.txt"
    data.write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(SystemExit):
        run_pretrain(tmp_path / "run", "--data", str(data))
    assert "latin1.txt is not UTF-8 text (byte 0xe9 at position 3)" in capsys.readouterr().err


def test_generate_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):  # checked before any model is loaded
        generate_command.main(["--model", "124M", "--temperature", "-1"])
    err = capsys.readouterr().err
    assert err.startswith("error: --temperature -1.0: give a number >= 0") and "Traceback" not in err
    with pytest.raises(SystemExit):
        generate_command.main(["--checkpoint", str(tmp_path)])
    assert capsys.readouterr().err.startswith(f"error: --checkpoint {tmp_path} holds no checkpoint")
