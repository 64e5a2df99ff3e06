"""The chapter-5 commands end to end, on a tiny configuration: pretrain, resume, generate."""

import subprocess
import sys

import pytest
import torch

from ch05_pretraining import checkpoints, fast_generation, pretrain, pretraining
from ch05_pretraining import generate as generate_command
from shared import gpt_to_gpt2_state_dict
from shared.data import fetch

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


def training_state(out):
    """The training state of the newest checkpoint of a pretraining run in ``out``."""
    latest = (out / "checkpoints" / "latest").read_text().strip()
    return torch.load(out / "checkpoints" / latest / "training_state.pt", weights_only=True)


def test_pretrain_resume_and_generate(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_pretrain(out, "--epochs", "2", "--max-steps", "6") == 0
    assert "tokens/s" in capsys.readouterr().out
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "checkpoints" / "latest").read_text() == "step-000006"
    assert training_state(out)["tokens_seen"] == 6 * 2 * 32, "6 steps of 2 windows of 32 tokens"

    assert run_pretrain(out, "--epochs", "2", "--max-steps", "9", "--resume") == 0
    assert "3 steps" in capsys.readouterr().out, "the resumed run reports the steps it took itself"
    assert (out / "checkpoints" / "latest").read_text() == "step-000009"
    assert training_state(out)["tokens_seen"] == 9 * 2 * 32, "a resumed run counts on from the checkpoint"

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
    from shared import GPTModel, generate, get_gpt_config, text_to_token_ids
    from shared.data import gpt2_encoding

    torch.manual_seed(0)  # a random model with GPT-2 124M's shapes, written in GPT-2's file format
    source = GPTModel(get_gpt_config("124M", qkv_bias=True, tie_weights=True)).eval()
    weights = tmp_path / "model.safetensors"
    import safetensors.torch

    safetensors.torch.save_file(gpt_to_gpt2_state_dict(source), weights)
    monkeypatch.setattr(pretraining, "download_gpt2_weights", lambda name: weights)
    prompt = text_to_token_ids("Hello", gpt2_encoding())
    expected = gpt2_encoding().decode(generate(source, prompt, 3, 1024)[0].tolist())  # greedy
    # top-k 1 leaves one candidate: at any temperature and seed, the greedy tokens of the weights given
    args = ["--model", "gpt2", "--prompt", "Hello", "--max-new-tokens", "3", "--temperature", "1",
            "--top-k", "1", "--seed", "5", "--precision", "fp32", "--device", "cpu"]  # fmt: skip
    assert generate_command.main(args) == 0
    assert capsys.readouterr().out == expected + "\n", (
        "generate --model must load that GPT-2's weights and sample with --top-k"
    )


def eos_checkpoint(folder):
    """A tiny GPT with GPT-2's vocabulary that always predicts <|endoftext|> next (final LayerNorm gives a
    constant vector, and only the end-of-text row of the output layer is not zero)."""
    from shared import GPTModel, get_gpt_config, save_checkpoint

    torch.manual_seed(0)
    model = GPTModel(get_gpt_config("124M", emb_dim=16, n_layers=1, n_heads=2, context_length=32))
    with torch.no_grad():
        model.final_norm.scale.zero_()
        model.final_norm.shift.fill_(1.0)
        model.out_head.weight.zero_()
        model.out_head.weight[50256] = 1.0
    save_checkpoint(folder, model)
    return folder


def test_generate_stop_at_eos(tmp_path, capsys):
    checkpoint = eos_checkpoint(tmp_path / "eos")
    argv = ["--checkpoint", str(checkpoint), "--prompt", "Hello", "--max-new-tokens", "3", "--device", "cpu"]
    assert generate_command.main([*argv, "--precision", "fp32"]) == 0
    assert capsys.readouterr().out == "Hello" + "<|endoftext|>" * 3 + "\n"  # without the option
    assert generate_command.main([*argv, "--precision", "fp32", "--stop-at-eos"]) == 0
    assert capsys.readouterr().out == "Hello\n", "generate --stop-at-eos must stop at <|endoftext|>"


def test_pretrain_warms_up_over_20_percent_of_all_steps(tmp_path, capsys):
    data = tmp_path / "short.txt"
    data.write_text(fetch("the-verdict.txt").read_text(encoding="utf-8")[:3000], encoding="utf-8")
    out = tmp_path / "run"
    # 21 training windows of 32 tokens: 21 steps per epoch at batch size 1, 42 in 2 epochs: 8 warm up
    argv = ["--data", str(data), "--epochs", "2", "--batch-size", "1", "--max-steps", "10",
            "--lr", "1e-3", "--initial-lr", "1e-4", "--precision", "fp32"]  # fmt: skip
    assert run_pretrain(out, *argv) == 0
    capsys.readouterr()
    lrs = training_state(out)["track_lrs"]
    expected = [1e-4 + step * (1e-3 - 1e-4) / 8 for step in range(8)] + [1e-3]
    assert lrs[:9] == pytest.approx(expected, rel=1e-9) and lrs[9] < 1e-3, (
        "pretrain's default warmup must be 20% of the optimizer steps of all epochs (8 of 42 here), "
        f"rising from --initial-lr to --lr: got {lrs}"
    )


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
