"""Tests for chapter 5's loss, data split, sampling and generation (ch05_pretraining/pretraining.py)."""

import io
import math
import sys
import warnings

import pytest
import torch
from test_gpt import TINY
from test_gpt import tiny_model as untrained_tiny_model
from torch.utils.data import DataLoader

from ch04_gpt.gpt import GPTModel, generate_text_simple, get_gpt_config
from ch05_pretraining.fast_generation import generate_fast
from shared import (
    calc_loss_batch,
    calc_loss_loader,
    create_train_val_loaders,
    evaluate_model,
    generate,
    sample_next_token,
    text_to_token_ids,
    token_ids_to_text,
    train_model_simple,
)
from shared.data import fetch, gpt2_encoding


def tiny_model(seed=0, **overrides):
    return untrained_tiny_model(seed, **overrides).eval()


@pytest.fixture(scope="module")
def tokenizer():
    return gpt2_encoding()


@pytest.fixture(scope="module")
def verdict():
    return fetch("the-verdict.txt").read_text(encoding="utf-8")


# --- text <-> ids -------------------------------------------------------------------------------------


def test_text_to_token_ids_round_trip(tokenizer):
    ids = text_to_token_ids("Every effort moves you<|endoftext|>", tokenizer)
    assert ids.tolist() == [[6109, 3626, 6100, 345, 50256]]
    assert token_ids_to_text(ids, tokenizer) == "Every effort moves you<|endoftext|>"
    assert token_ids_to_text(ids[0], tokenizer) == "Every effort moves you<|endoftext|>"


def test_token_ids_to_text_refuses_a_batch(tokenizer):
    with pytest.raises(ValueError, match="one sequence"):
        token_ids_to_text(torch.zeros(2, 3, dtype=torch.long), tokenizer)


# --- loss ---------------------------------------------------------------------------------------------


def test_calc_loss_batch_is_the_mean_negative_log_probability_of_the_targets():
    model = tiny_model()
    inputs = torch.randint(0, 100, (2, 5), generator=torch.Generator().manual_seed(1))
    targets = torch.randint(0, 100, (2, 5), generator=torch.Generator().manual_seed(2))
    loss = calc_loss_batch(inputs, targets, model, "cpu")
    log_probs = torch.log_softmax(model(inputs), dim=-1)
    by_hand = -log_probs.gather(-1, targets.unsqueeze(-1)).mean()
    torch.testing.assert_close(loss, by_hand)
    assert loss.requires_grad  # training backpropagates through it


def test_calc_loss_loader_averages_the_first_num_batches():
    model = tiny_model()
    gen = torch.Generator().manual_seed(3)
    batches = [tuple(torch.randint(0, 100, (2, 4), generator=gen) for _ in range(2)) for _ in range(2)]
    loader = DataLoader(batches, batch_size=None)
    each = [calc_loss_batch(x, y, model, "cpu").item() for x, y in batches]
    assert calc_loss_loader(loader, model, "cpu") == pytest.approx(sum(each) / 2)
    assert calc_loss_loader(loader, model, "cpu", num_batches=1) == pytest.approx(each[0])
    assert calc_loss_loader(loader, model, "cpu", num_batches=99) == pytest.approx(sum(each) / 2)


def test_calc_loss_loader_refuses_an_empty_loader_instead_of_returning_nan():
    with pytest.raises(ValueError, match="no batches"):
        calc_loss_loader(DataLoader([], batch_size=2), tiny_model(), "cpu")
    with pytest.raises(ValueError, match="num_batches"):
        loader = DataLoader([(torch.zeros(1, 2, dtype=torch.long),) * 2], batch_size=None)
        calc_loss_loader(loader, tiny_model(), "cpu", num_batches=0)


def test_an_untrained_gpt2_is_near_a_uniform_guess(verdict):
    # the book's GPT_CONFIG_124M starts at 10.98; a smaller random model is likewise near ln(50257)
    torch.manual_seed(123)
    model = GPTModel({**TINY, "vocab_size": 50257, "context_length": 64}).eval()
    train_loader, val_loader = create_train_val_loaders(verdict, context_length=64, batch_size=2)
    loss = calc_loss_loader(val_loader, model, "cpu")
    assert abs(loss - math.log(50257)) < 0.5


def test_evaluate_model_restores_the_training_mode_and_turns_dropout_off(verdict):
    torch.manual_seed(0)
    model = GPTModel({**TINY, "vocab_size": 50257, "context_length": 64, "drop_rate": 0.5})
    train_loader, val_loader = create_train_val_loaders(verdict, context_length=64)
    model.eval()
    expected = calc_loss_loader(val_loader, model, "cpu", num_batches=1)  # without dropout
    model.train()
    first = evaluate_model(model, train_loader, val_loader, "cpu", eval_iter=1)[1]
    assert model.training, "evaluate_model must give the model back in training mode"
    second = evaluate_model(model, train_loader, val_loader, "cpu", eval_iter=1)[1]
    assert first == second, "evaluate_model must be deterministic: dropout off while it evaluates"
    assert first == pytest.approx(expected, abs=1e-6), "evaluate_model must evaluate with dropout off"
    model.eval()
    evaluate_model(model, train_loader, val_loader, "cpu", eval_iter=1)
    assert not model.training, "evaluate_model must leave a model in eval mode in eval mode"


# --- the 90/10 split ----------------------------------------------------------------------------------


def test_the_books_split_of_the_verdict(verdict):
    torch.manual_seed(123)
    train_loader, val_loader = create_train_val_loaders(verdict, context_length=256, batch_size=2)
    assert (len(train_loader), len(val_loader)) == (9, 1)
    assert sum(x.numel() for x, _ in train_loader) == 4608
    assert sum(x.numel() for x, _ in val_loader) == 512
    for x, y in train_loader:
        assert x.shape == y.shape == (2, 256)
        assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one


def test_a_context_longer_than_the_validation_split_names_the_counts(verdict):
    with pytest.raises(ValueError, match=r"validation split .* 534 tokens.*context_length <= 533"):
        create_train_val_loaders(verdict, context_length=1024)


def test_a_training_split_smaller_than_one_batch_is_an_error(verdict):
    with pytest.raises(ValueError, match=r"training split makes 18 window\(s\).*batch_size <= 18"):
        create_train_val_loaders(verdict, context_length=256, batch_size=32)
    with pytest.raises(ValueError, match="train_ratio"):
        create_train_val_loaders(verdict, context_length=256, train_ratio=1.0)


# --- sampling and generation --------------------------------------------------------------------------


BOOK_LOGITS = torch.tensor([4.51, 0.89, -1.90, 6.75, 1.63, -1.62, -1.89, 6.28, 1.79])  # section 5.3


def draw_frequencies(logits, draws=20_000, seed=0, **sampling):
    """How often sample_next_token picks each token, over ``draws`` rows of the same ``logits`` (seeded)."""
    torch.manual_seed(seed)
    tokens = sample_next_token(logits.expand(draws, -1).clone(), **sampling)
    assert tokens.shape == (draws, 1)
    return torch.bincount(tokens.flatten(), minlength=logits.shape[-1]).double() / draws


def test_sample_next_token_greedy_and_top_k_cut_off():
    assert sample_next_token(BOOK_LOGITS[None]).item() == 3, "temperature 0 must take the highest score"
    assert sample_next_token(BOOK_LOGITS[None], temperature=2.0, top_k=1).item() == 3, (
        "top_k=1 must leave only the highest score"
    )
    for top_k in (2, 3, 5):
        freqs = draw_frequencies(BOOK_LOGITS, temperature=1.0, top_k=top_k)
        kept = torch.topk(BOOK_LOGITS, top_k).indices
        outside = torch.ones(9, dtype=torch.bool)
        outside[kept] = False
        assert freqs[outside].sum() == 0, f"top_k={top_k}: a token outside the {top_k} best was drawn"
        expected = torch.softmax(BOOK_LOGITS[kept].double(), dim=-1)
        assert torch.allclose(freqs[kept], expected, atol=0.01), (
            f"top_k={top_k}: the kept tokens must be drawn with the softmax of their logits, "
            f"expected {expected.tolist()}, drew {freqs[kept].tolist()}"
        )


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_sample_next_token_divides_the_logits_by_the_temperature(temperature):
    freqs = draw_frequencies(BOOK_LOGITS, temperature=temperature)
    expected = torch.softmax(BOOK_LOGITS.double() / temperature, dim=-1)
    assert torch.allclose(freqs, expected, atol=0.01), (
        f"at temperature {temperature} the probabilities must be softmax(logits / {temperature}): "
        f"expected {expected.tolist()}, drew {freqs.tolist()}"
    )


def test_a_higher_temperature_flattens_the_distribution():
    top = [draw_frequencies(BOOK_LOGITS, temperature=t)[3].item() for t in (0.5, 1.0, 2.0, 5.0)]
    # softmax(logits / t)[3] is 0.713, 0.572, 0.421, 0.242
    assert top == sorted(top, reverse=True) and top[0] > 0.68 and top[-1] < 0.28, (
        f"a higher temperature must flatten the distribution: the best token's share fell as {top}"
    )
    rare = draw_frequencies(BOOK_LOGITS, temperature=5.0)[2].item()  # the lowest score
    assert rare > 0.03, "at temperature 5 even the lowest score must be drawn now and then (p = 0.043)"


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_generate_samples_at_the_temperature_it_is_given(temperature):
    model = tiny_model(seed=7)
    with torch.no_grad():
        model.out_head.weight.mul_(8.0)  # sharper scores, so that the temperature matters
    prompt = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        probs = torch.softmax(model(prompt)[0, -1].double() / temperature, dim=-1)
    torch.manual_seed(0)
    rows = 4000
    out = generate(model, prompt.expand(rows, -1).clone(), 1, 16, temperature=temperature)
    freqs = torch.bincount(out[:, -1], minlength=probs.shape[0]).double() / rows
    best = probs.argmax()
    assert abs(freqs[best] - probs[best]) < 0.03, (
        f"generate at temperature {temperature} must draw the likeliest token with probability "
        f"{probs[best]:.3f} (softmax(logits / temperature)), drew it {freqs[best]:.3f} of the time"
    )


@pytest.mark.parametrize("bad", [{"temperature": -0.5}, {"temperature": "hot"}, {"top_k": 0}, {"top_k": 2.5}])
def test_sampling_arguments_are_checked(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        generate(tiny_model(), torch.zeros(1, 2, dtype=torch.long), 3, 16, **bad)


@pytest.mark.parametrize("kwargs", [{}, {"temperature": 1.3, "top_k": 7}, {"temperature": 0.7}])
@pytest.mark.parametrize("prompt_len,new", [(3, 8), (5, 20)])  # 5 + 20 > 16: past the context length
def test_cached_generation_gives_the_plain_loops_tokens(kwargs, prompt_len, new):
    model = tiny_model(seed=4)
    prompt = torch.randint(0, 100, (3, prompt_len), generator=torch.Generator().manual_seed(5))
    torch.manual_seed(11)
    cached = generate_fast(model, prompt, new, 16, **kwargs)
    torch.manual_seed(11)
    plain = generate(model, prompt, new, 16, **kwargs)
    assert cached.shape == (3, prompt_len + new)
    assert torch.equal(cached, plain)
    if not kwargs:  # greedy is chapter 4's generate_text_simple
        assert torch.equal(cached, generate_text_simple(model, prompt, new, 16))


def test_generation_stops_at_end_of_text():
    model = tiny_model(seed=4)
    prompt = torch.tensor([[1, 2, 3]])
    greedy = generate(model, prompt, 10, 16)
    eos = greedy[0, 5].item()  # make the third generated token the end-of-text token
    first = (greedy[0, 3:] == eos).nonzero()[0].item()
    stopped = generate(model, prompt, 10, 16, eos_id=eos)
    assert torch.equal(stopped, greedy[:, : 3 + first])  # the book's rule: eos itself is not appended


def test_a_finished_row_is_padded_with_end_of_text_until_all_rows_finish():
    model = tiny_model(seed=4)
    prompts = torch.tensor([[1, 2, 3], [7, 8, 9]])
    greedy = generate(model, prompts, 12, 16)
    eos = greedy[0, 3].item()  # row 0 ends at once
    out = generate(model, prompts, 12, 16, eos_id=eos)
    row1_end = (greedy[1, 3:] == eos).nonzero()
    expected_len = 3 + (row1_end[0].item() if len(row1_end) else 12)
    assert out.shape[1] == expected_len
    assert (out[0, 3:] == eos).all()
    assert torch.equal(out[1], greedy[1, :expected_len])


def test_a_prompt_longer_than_the_context_is_cropped_with_a_warning():
    model = tiny_model()
    prompt = torch.randint(0, 100, (1, 20), generator=torch.Generator().manual_seed(6))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = generate(model, prompt, 2, 16)
    assert "only its last 16 tokens" in str(caught[0].message)
    assert torch.equal(out[:, :20], prompt)
    assert torch.equal(out, generate_text_simple(model, prompt, 2, 16))


class _CountedLoss:
    """A loss whose value is read through float(), counting the reads (each one is a GPU sync)."""

    def __init__(self):
        self.reads = 0

    def __float__(self):
        self.reads += 1
        return 2.5


def test_the_progress_bar_reads_the_loss_at_most_once_per_interval(monkeypatch):
    from shared import progress

    monkeypatch.setattr(progress, "_in_jupyter", lambda: False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # the bar's stream outside Jupyter
    bar = progress.TrainingProgress(100, interval=3600.0)
    loss = _CountedLoss()
    for step in range(100):
        bar.step(loss, count=256 * (step + 1))
    assert loss.reads == 1, "the first step only: the rest came within the interval"
    assert bar.bar.postfix.startswith("loss=2.500, tokens_per_s=")
    bar.close()

    bar = progress.TrainingProgress(5, speed_name="examples_per_s", interval=0.0)
    for step in range(5):
        bar.step(loss, count=8 * (step + 1))
    assert loss.reads == 6, "with interval 0 the loss is read at every step"
    bar.close()

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a loss that still requires grad is read without a warning
        weight = torch.ones(2, requires_grad=True)
        bar = progress.TrainingProgress(10)
        bar.step((weight * 2).sum(), count=10)
        assert bar.bar.postfix.startswith("loss=4.000")
        bar.close()

    hidden = progress.TrainingProgress(10, enabled=False)
    loss = _CountedLoss()
    hidden.step(loss, count=10)
    assert loss.reads == 0, "no bar, no reason to wait for the GPU"


def test_in_jupyter_the_bar_and_the_lines_share_the_cells_output(monkeypatch, capsys):
    from shared import progress

    monkeypatch.setattr(progress, "_in_jupyter", lambda: True)
    bar = progress.TrainingProgress(3)
    bar.step(1.0, count=1)
    bar.print("Ep 1 (Step 000000): Train loss 1.000, Val loss 2.000")
    bar.close()
    captured = capsys.readouterr()
    assert captured.err == "", "nothing on stderr: Jupyter shows stderr in separate pink boxes"
    assert "Ep 1 (Step 000000)" in captured.out and "training:" in captured.out


def test_generation_refuses_an_empty_prompt_and_a_context_the_model_cannot_read():
    model = tiny_model()
    with pytest.raises(ValueError, match="the prompt is empty"):
        generate(model, torch.zeros(1, 0, dtype=torch.long), 3, 16)
    with pytest.raises(ValueError, match="context_size 32 is larger than the model's context of 16 tokens"):
        generate(model, torch.zeros(1, 2, dtype=torch.long), 3, 32)
    with pytest.raises(ValueError, match="the prompt is empty"):
        generate_fast(model, torch.zeros(1, 0, dtype=torch.long), 3, 16)


def test_an_empty_text_is_named_as_such():
    with pytest.raises(ValueError, match="the text is empty"):
        create_train_val_loaders(" \n", context_length=16)


def test_train_model_simple_stops_after_max_steps(tokenizer):
    text = fetch("the-verdict.txt").read_text(encoding="utf-8")[:3000]
    train_loader, val_loader = create_train_val_loaders(text, context_length=32, batch_size=2)
    torch.manual_seed(0)
    model = GPTModel(get_gpt_config("124M", emb_dim=32, n_layers=1, n_heads=2, context_length=32))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    steps = len(train_loader) + 3  # into the second epoch
    _, _, tokens_seen = train_model_simple(
        model, train_loader, val_loader, optimizer, "cpu", 3, 1, 1, "Every", tokenizer, max_steps=steps,
        progress=False,
    )  # fmt: skip
    assert len(tokens_seen) == steps, "one record per step with eval_freq 1, and no step after max_steps"
    assert tokens_seen[-1] == steps * 2 * 32, "tokens seen count every token of every batch"


# --- the training loop ------------------------------------------------------------------------------------


class CharTokenizer:
    """Ids 1 to 50 for the sample a training loop prints after each epoch (a tiny model's vocabulary)."""

    def encode(self, text, allowed_special=()):
        return [ord(c) % 50 + 1 for c in text]

    def decode(self, ids):
        return "".join(chr(ord("a") + i % 26) for i in ids)


def fixed_loaders(rows=20, num_tokens=8, batch_size=2):
    """In-order loaders of ``rows`` windows of ``num_tokens`` random ids (targets: the inputs shifted)."""
    ids = torch.randint(0, 100, (rows, num_tokens + 1), generator=torch.Generator().manual_seed(8))
    dataset = torch.utils.data.TensorDataset(ids[:, :-1], ids[:, 1:])
    return DataLoader(dataset, batch_size=batch_size), DataLoader(dataset, batch_size=batch_size)


def test_train_model_simple_records_tokens_seen_at_every_eval_freq_steps(capsys):
    model = untrained_tiny_model(seed=0)
    train_loader, val_loader = fixed_loaders()  # 10 steps per epoch of 2 x 8 = 16 tokens
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train_losses, val_losses, tokens_seen = train_model_simple(
        model, train_loader, val_loader, optimizer, "cpu", num_epochs=2, eval_freq=3, eval_iter=1,
        start_context="Every", tokenizer=CharTokenizer(), progress=False,
    )  # fmt: skip
    # steps 0, 3, 6, ..., 18 of 20 are evaluated; after step s the model has seen (s + 1) x 16 tokens
    assert tokens_seen == [16, 64, 112, 160, 208, 256, 304], (
        "train_model_simple must evaluate after steps 0, eval_freq, 2 x eval_freq, ... and count the "
        f"tokens of every batch (rows x columns): got {tokens_seen}"
    )
    assert len(train_losses) == len(val_losses) == 7
    out = capsys.readouterr().out
    steps = [int(line.split("(Step ")[1][:6]) for line in out.splitlines() if "(Step " in line]
    assert steps == [0, 3, 6, 9, 12, 15, 18], f"the printed evaluations must be at steps 0, 3, ...: {steps}"
