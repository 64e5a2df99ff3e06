"""Talk to an instruction-fine-tuned model in a terminal, its answers printed as they are written.

    python -m ch07_instruct.chat --checkpoint path/to/checkpoint      # saved by chapter 7's notebook
    python -m ch07_instruct.chat --gpt2 "gpt2-medium (355M)"           # OpenAI's GPT-2, not fine-tuned

Type an instruction and press Enter; an empty line is skipped, `exit`, `quit`, end of input (Ctrl-D) or
Ctrl-C at the prompt ends the session; Ctrl-C while an answer is written stops that answer. To give an
input as well, put it after ` | `: `Translate to French | Good morning`.
Instructions can also be piped in, one per line (the answers are then separated by a blank line):
`printf 'Name a colour.\\n' | python -m ch07_instruct.chat --checkpoint ...`.
"""

from __future__ import annotations

import argparse
import sys

import torch

from ch04_gpt.gpt import GPTModel
from ch05_pretraining.checkpoints import load_checkpoint, read_checkpoint_config
from ch05_pretraining.command_checks import (
    check_checkpoint,
    check_device,
    check_sampling_args,
    fail,
    offline_answer_at_once,
)
from ch05_pretraining.pretraining import load_pretrained_gpt2
from ch07_instruct.instruct import PROMPT_STYLES, stream_response
from shared.data import DataError, gpt2_encoding
from shared.device import add_precision_option, generation_dtype, get_device

INPUT_SEPARATOR = " | "
EXIT_WORDS = ("exit", "quit")


def load_model(checkpoint=None, gpt2=None, device="cpu"):
    """A GPTModel in eval mode on ``device``: from a checkpoint folder (save_checkpoint) or a GPT-2 size."""
    if (checkpoint is None) == (gpt2 is None):
        raise ValueError("give either a checkpoint or a GPT-2 size, not both")
    if gpt2 is not None:
        return load_pretrained_gpt2(gpt2, device)
    model = GPTModel(read_checkpoint_config(checkpoint))
    load_checkpoint(checkpoint, model)
    return model.to(device).eval()


def parse_line(line):
    """An entry (instruction, input) from a typed line: ``instruction | input`` or the instruction alone."""
    instruction, _, input_text = line.partition(INPUT_SEPARATOR)
    return {"instruction": instruction.strip(), "input": input_text.strip()}


def chat_loop(model, tokenizer, lines, write=None, *, style="alpaca", prompt="", **kwargs):
    """Answer each instruction in ``lines`` (an iterable of strings), writing the answer piece by piece with
    ``write`` (default: to stdout, flushed at once). ``kwargs`` go to stream_response (max_new_tokens,
    temperature, top_k). Returns the answers, one string per instruction.

    ``prompt`` (e.g. "> " in a terminal) is written before each line is read, and a newline after the
    last one when the input ends, so that the shell's prompt starts on a line of its own. Without a
    prompt (input from a pipe), a blank line separates the answers. Ctrl-C while an answer is written
    stops that answer (marked " [stopped]") and goes on with the next line; Ctrl-C while a line is read
    ends the loop (a KeyboardInterrupt, for the caller)."""
    if write is None:

        def write(text):
            sys.stdout.write(text)
            sys.stdout.flush()

    format_fn, response_header = PROMPT_STYLES[style]
    answers = []
    write(prompt)
    for line in lines:
        line = line.strip()
        if line.lower() in EXIT_WORDS:
            return answers
        if line:
            if answers and not prompt:
                write("\n")  # piped: a blank line between two answers
            pieces = []
            try:
                for piece in stream_response(
                    model,
                    tokenizer,
                    parse_line(line),
                    format_fn=format_fn,
                    response_header=response_header,
                    **kwargs,
                ):
                    pieces.append(piece)
                    write(piece)
            except ValueError as err:  # a prompt too long for the model: say so and carry on
                write(f"[{err}]")
            except KeyboardInterrupt:  # Ctrl-C during an answer: stop it, keep what was written
                write(" [stopped]")
            answers.append("".join(pieces))
            write("\n")
        write(prompt)
    if prompt:
        write("\n")  # end of input (Ctrl-D) on the prompt's line
    return answers


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m ch07_instruct.chat",
        description="Chat with an instruction-fine-tuned GPT model; answers are printed as they are written.",
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--checkpoint", help="a checkpoint folder or checkpoint_dir written by save_checkpoint"
    )
    source.add_argument(
        "--gpt2", metavar="SIZE", help='a GPT-2 size, e.g. "gpt2-medium (355M)" (downloads it)'
    )
    parser.add_argument(
        "--style", choices=sorted(PROMPT_STYLES), default="alpaca", help="prompt style it learned"
    )
    parser.add_argument("--max-new-tokens", type=int, default=256, help="longest answer, in tokens (256)")
    parser.add_argument(
        "--temperature", type=float, default=0.0, help="0 (default): always the likeliest token"
    )
    parser.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest tokens only")
    parser.add_argument("--seed", type=int, default=123, help="random seed, for sampling (123)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: the fastest available)")
    add_precision_option(parser)
    args = parser.parse_args(argv)
    try:
        check_args(args)
        device = get_device(args.device)
        if args.gpt2 is not None:
            offline_answer_at_once()
        model = load_model(args.checkpoint, args.gpt2, device).to(generation_dtype(device, args.precision))
        tokenizer = gpt2_encoding()
    except (FileNotFoundError, ValueError, DataError) as err:
        fail(parser, err)
    except KeyboardInterrupt:  # while the model loads
        return 0
    torch.manual_seed(args.seed)
    interactive = sys.stdin.isatty()
    if interactive:
        print(
            "Type an instruction (optionally `instruction | input`); `exit`, Ctrl-D or Ctrl-C at the prompt "
            "ends, Ctrl-C during an answer stops it."
        )
    try:
        chat_loop(
            model,
            tokenizer,
            sys.stdin,
            style=args.style,
            prompt="> " if interactive else "",
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
        )
    except KeyboardInterrupt:  # Ctrl-C at the prompt: the end of the session
        print()
    return 0


def check_args(args) -> None:
    """Every option, before a model is loaded (or downloaded): a ValueError in the command's terms."""
    check_sampling_args(args.temperature, args.top_k, args.max_new_tokens)
    check_device(args.device)
    if args.checkpoint is not None:
        args.checkpoint = check_checkpoint(args.checkpoint)


if __name__ == "__main__":
    sys.exit(main())
