"""`python -m ch07_instruct.chat`: a chat loop over a saved checkpoint, end to end, with scripted input."""

import io
import subprocess
import sys

import pytest
import torch

from ch07_instruct.chat import chat_loop, load_model, parse_line
from ch07_instruct.instruct import format_input_phi3, generate_response
from shared import GPTModel, get_gpt_config, save_checkpoint
from shared.data import gpt2_encoding
from shared.export import REPO_ROOT


@pytest.fixture(scope="module")
def tokenizer():
    return gpt2_encoding()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny GPT with GPT-2's vocabulary and random weights, saved as chapter 7's notebook saves one."""
    torch.manual_seed(0)
    cfg = get_gpt_config("124M", emb_dim=16, n_layers=1, n_heads=2, context_length=96, qkv_bias=True)
    folder = tmp_path_factory.mktemp("chat") / "instruct-sft"
    save_checkpoint(folder, GPTModel(cfg))
    return folder


def run_chat(*args, stdin=""):
    return subprocess.run(
        [sys.executable, "-m", "ch07_instruct.chat", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )


def chat_in_process(checkpoint, monkeypatch, capsys, *options):
    """The chat command's answer to one instruction, run in this process (faster than a new one)."""
    from ch07_instruct import chat

    monkeypatch.setattr(sys, "stdin", io.StringIO("Name a colour.\n"))
    argv = ["--checkpoint", checkpoint, "--max-new-tokens", 8, "--device", "cpu", "--precision", "fp32"]
    assert chat.main([*map(str, argv), *map(str, options)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out


def test_chat_samples_with_the_temperature_top_k_and_seed_given(checkpoint, monkeypatch, capsys):
    def answer(*options):
        return chat_in_process(checkpoint, monkeypatch, capsys, *options)

    greedy = answer()
    sampled = answer("--temperature", 1.5, "--seed", 1)
    # a random model spreads its probability over GPT-2's 50,257 tokens: 8 draws are never the greedy ones
    assert sampled != greedy, "chat --temperature above 0 must sample, not take the likeliest tokens"
    assert answer("--temperature", 1.5, "--seed", 1) == sampled, "the same --seed must give the same answer"
    assert answer("--temperature", 1.5, "--seed", 2) != sampled, "another --seed must give another answer"
    assert answer("--temperature", 1.5, "--top-k", 1, "--seed", 2) == greedy, (
        "chat --top-k 1 must leave only the likeliest token, at any temperature"
    )


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_chat_end_to_end_with_scripted_input(checkpoint, tokenizer, precision):
    lines = ["Name a colour.", "Translate to French | Good morning", "", "exit", "never read"]
    result = run_chat(
        "--checkpoint",
        checkpoint,
        "--max-new-tokens",
        6,
        "--device",
        "cpu",
        "--precision",
        precision,
        stdin="\n".join(lines),
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    model = load_model(checkpoint).to(torch.bfloat16 if precision == "bf16" else torch.float32)
    expected = [generate_response(model, tokenizer, parse_line(line), 6) for line in lines[:2]]
    assert result.stdout == "\n".join(answer + "\n" for answer in expected)  # a blank line between answers


def test_chat_ends_at_end_of_input(checkpoint):
    result = run_chat(
        "--checkpoint", checkpoint, "--max-new-tokens", 2, stdin="Say hi."
    )  # no newline, no exit
    assert result.returncode == 0 and result.stdout.count("\n") == 1


def test_chat_reports_a_missing_checkpoint(tmp_path):
    result = run_chat("--checkpoint", tmp_path / "nothing")
    assert result.returncode == 2
    assert result.stderr == f"error: --checkpoint {tmp_path / 'nothing'}: no such folder\n"


def test_chat_needs_a_model():
    result = run_chat()
    assert result.returncode == 2 and "one of the arguments --checkpoint --gpt2 is required" in result.stderr


def test_chat_loop_streams_pieces_and_carries_on_after_a_prompt_too_long(checkpoint, tokenizer):
    model = load_model(checkpoint)
    written = []
    answers = chat_loop(
        model,
        tokenizer,
        ["Name a colour.", "Summarize | " + "word " * 200, "Say hi."],
        written.append,
        max_new_tokens=8,
    )
    assert answers[0] == generate_response(model, tokenizer, {"instruction": "Name a colour."}, 8)
    assert answers[1] == "" and "the prompt has" in "".join(written) and "no room is left" in "".join(written)
    assert len(answers) == 3 and "".join(written).count("\n") == 5  # three answers, two blank lines
    assert len([w for w in written if w not in ("", "\n")]) > 3  # pieces, not one block per answer


def test_chat_loop_phi3_style(checkpoint, tokenizer):
    model = load_model(checkpoint)
    (answer,) = chat_loop(
        model, tokenizer, ["Name a colour."], lambda text: None, style="phi3", max_new_tokens=5
    )
    expected = generate_response(
        model,
        tokenizer,
        {"instruction": "Name a colour."},
        5,
        format_fn=format_input_phi3,
        response_header="\n<|assistant|>:\n",
    )
    assert answer == expected


def test_parse_line():
    assert parse_line("Translate | Good morning") == {"instruction": "Translate", "input": "Good morning"}
    assert parse_line("  Name a colour.  ") == {"instruction": "Name a colour.", "input": ""}
    assert parse_line("a|b") == {"instruction": "a|b", "input": ""}  # only ' | ' separates


def test_load_model_needs_exactly_one_source(checkpoint):
    with pytest.raises(ValueError, match="either a checkpoint or a GPT-2 size"):
        load_model()
    with pytest.raises(ValueError, match="either a checkpoint or a GPT-2 size"):
        load_model(checkpoint, "124M")
