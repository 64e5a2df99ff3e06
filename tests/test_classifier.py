"""Tests for ch06_classifier/classifier.py: reading and checking the SMS data, balancing and splitting,
padding and truncation, the frozen parameter count, accuracy and loss on known batches, the training loop,
classify_review, and saving and loading a classifier.

Models are tiny, except where GPT-2 124M's parameters are counted on the meta device.
"""

import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from shared import (
    LABELS,
    GPTModel,
    SpamDataset,
    add_classification_head,
    calc_accuracy_loader,
    calc_classification_loss_batch,
    calc_classification_loss_loader,
    classify_review,
    create_balanced_dataset,
    evaluate_classifier,
    get_gpt_config,
    load_checkpoint,
    load_classifier,
    random_split,
    read_sms_spam,
    save_checkpoint,
    train_classifier_simple,
    write_csv,
)
from shared.data import fetch

TINY = {
    "vocab_size": 100,
    "context_length": 16,
    "emb_dim": 32,
    "n_heads": 4,
    "n_layers": 3,
    "drop_rate": 0.0,
    "qkv_bias": True,
}


class CharTokenizer:
    """One id (1 to 95) per character: lengths are easy to predict."""

    def encode(self, text):
        return [ord(c) % 95 + 1 for c in text]


def tiny_classifier(seed=0, num_classes=2, **overrides):
    torch.manual_seed(seed)
    return add_classification_head(GPTModel({**TINY, **overrides}), num_classes=num_classes)


# --- reading the data ------------------------------------------------------------------------------------


def test_the_real_file_reads_as_pandas_reads_it():
    path = fetch("SMSSpamCollection")
    df = read_sms_spam(path)
    assert len(df) == 5572
    assert df["Label"].value_counts().to_dict() == {"ham": 4825, "spam": 747}
    assert df.equals(pd.read_csv(path, sep="\t", header=None, names=["Label", "Text"]))


@pytest.mark.parametrize(
    "content, message",
    [
        ("ham\tOk\nspam no tab here\n", "line 2: expected a label, a tab and the message, got 1 field"),
        ("ham\tOk\nham\tfine\nSpam\tWIN\n", "line 3: unknown label 'Spam'"),
        ("ham\tOk\nspam\t  \n", "line 2: the spam message is empty"),
        ("ham\tOk\tand more\n", "line 1: expected a label, a tab and the message, got 3 field"),
        # a quoted message spans lines 1 to 3, so the bad row starts on line 4
        ('ham\t"a quote\nthat goes on\nand ends" here\nbad\tx\n', "line 4: unknown label 'bad'"),
    ],
)
def test_bad_rows_are_refused_with_their_line(tmp_path, content, message):
    path = tmp_path / "data.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_sms_spam(path)


def test_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("ham\tOk\n\nspam\tWIN\n", encoding="utf-8")
    assert read_sms_spam(path).values.tolist() == [["ham", "Ok"], ["spam", "WIN"]]


# --- balancing, splitting, CSV files ----------------------------------------------------------------------


def test_balancing_counts_and_the_books_sample():
    df = read_sms_spam(fetch("SMSSpamCollection"))
    balanced = create_balanced_dataset(df)
    assert balanced["Label"].value_counts().to_dict() == {"ham": 747, "spam": 747}
    # the book's code: the same ham sample, then every spam message
    spam = df[df["Label"] == "spam"]
    book = pd.concat([df[df["Label"] == "ham"].sample(len(spam), random_state=123), spam])
    assert balanced.equals(book)


def test_balancing_needs_two_labels():
    with pytest.raises(ValueError, match="two labels"):
        create_balanced_dataset(pd.DataFrame({"Label": ["ham", "ham"], "Text": ["a", "b"]}))


def test_split_sizes_are_the_books_and_the_splits_are_disjoint():
    df = pd.DataFrame({"Label": [i % 2 for i in range(1494)], "Text": [f"message {i}" for i in range(1494)]})
    train, validation, test = random_split(df, 0.7, 0.1)
    assert (len(train), len(validation), len(test)) == (1045, 149, 300)
    texts = [set(part["Text"]) for part in (train, validation, test)]
    assert set.union(*texts) == set(df["Text"]) and sum(len(t) for t in texts) == len(df)
    again = random_split(df, 0.7, 0.1)
    assert all(a.equals(b) for a, b in zip((train, validation, test), again, strict=True))


@pytest.mark.parametrize("train_frac, validation_frac", [(0.8, 0.3), (-0.1, 0.1), (0.7, 1.5)])
def test_split_fractions_are_checked(train_frac, validation_frac):
    with pytest.raises(ValueError):
        random_split(pd.DataFrame({"Label": [0], "Text": ["a"]}), train_frac, validation_frac)


def test_write_csv_round_trip_and_an_error_keeps_the_old_file(tmp_path):
    df = pd.DataFrame({"Label": [0, 1], "Text": ["hello, world", 'a "quoted"\nmessage']})
    write_csv(df, tmp_path / "a.csv")
    assert pd.read_csv(tmp_path / "a.csv").equals(df)

    class Broken(pd.DataFrame):
        def to_csv(self, *args, **kwargs):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_csv(Broken(df), tmp_path / "a.csv")
    assert pd.read_csv(tmp_path / "a.csv").equals(df)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]  # no temporary file left


# --- SpamDataset ------------------------------------------------------------------------------------------


def frame(*texts, labels=None):
    return pd.DataFrame({"Label": labels or [i % 2 for i in range(len(texts))], "Text": list(texts)})


def test_padding_to_the_longest_message():
    dataset = SpamDataset(frame("abc", "abcdefg", "a"), CharTokenizer(), pad_token_id=0)
    assert dataset.max_length == 7 and dataset.num_truncated == 0 and len(dataset) == 3
    ids, label = dataset[2]
    assert ids.tolist() == [ord("a") % 95 + 1] + [0] * 6 and label.item() == 0
    assert ids.dtype == label.dtype == torch.long


def test_truncation_to_a_given_max_length():
    dataset = SpamDataset(frame("abc", "abcdefg"), CharTokenizer(), max_length=4, pad_token_id=0)
    assert dataset.num_truncated == 1
    assert dataset[1][0].tolist() == CharTokenizer().encode("abcd")
    assert dataset[0][0].tolist() == CharTokenizer().encode("abc") + [0]


def test_gpt2_padding_uses_end_of_text(tmp_path):
    from shared.data import gpt2_encoding

    write_csv(frame("Hi there", "Free entry in 2 a wkly comp"), tmp_path / "train.csv")
    dataset = SpamDataset(tmp_path / "train.csv", gpt2_encoding())
    ids, _ = dataset[0]
    assert ids.tolist()[-3:] == [50256] * 3 and len(ids) == dataset.max_length


@pytest.mark.parametrize(
    "labels, texts, message",
    [
        ([0, 1], ["ok", "  "], "row 1 of the DataFrame: the message is empty"),
        ([0, 2], ["ok", "WIN"], "row 1 of the DataFrame: unknown label 2"),
        (["ham"], ["ok"], r"map the names to ids first"),
        ([True], ["ok"], "unknown label True"),
    ],
)
def test_bad_rows_in_a_dataset(labels, texts, message):
    with pytest.raises(ValueError, match=message):
        SpamDataset(pd.DataFrame({"Label": labels, "Text": texts}), CharTokenizer())


def test_an_empty_field_in_a_csv_file_names_the_file(tmp_path):
    (tmp_path / "test.csv").write_text('Label,Text\n0,hello\n1,""\n', encoding="utf-8")
    with pytest.raises(ValueError, match="row 1 of test.csv: the message is empty"):
        SpamDataset(tmp_path / "test.csv", CharTokenizer())


def test_an_empty_csv_file_is_refused_with_its_full_path(tmp_path):
    (tmp_path / "train.csv").write_bytes(b"")
    with pytest.raises(ValueError) as err:
        SpamDataset(tmp_path / "train.csv", CharTokenizer())
    assert str((tmp_path / "train.csv").resolve()) in str(err.value) and "is empty" in str(err.value)


def test_bad_max_length_and_missing_columns():
    with pytest.raises(ValueError, match="max_length"):
        SpamDataset(frame("abc"), CharTokenizer(), max_length=0)
    with pytest.raises(ValueError, match="lacks the column"):
        SpamDataset(pd.DataFrame({"label": [0], "text": ["a"]}), CharTokenizer())


# --- the classification head ------------------------------------------------------------------------------


def test_the_books_trainable_parameter_count_for_gpt2_124m():
    with torch.device("meta"):
        model = GPTModel(get_gpt_config("124M", qkv_bias=True))
        add_classification_head(model, num_classes=2)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    assert (trainable, total) == (7_090_946, 124_441_346)
    assert model.out_head.out_features == 2 and model.cfg["num_classes"] == 2


def test_which_parameters_train():
    model = tiny_classifier()  # the book's choice: the last block
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("trf_blocks.2.", "final_norm.", "out_head.")) for n in trainable)
    assert {"out_head.weight", "out_head.bias", "final_norm.scale"} <= trainable

    torch.manual_seed(0)
    model = add_classification_head(GPTModel(TINY), num_classes=3, num_trainable_blocks=3)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert {n.split(".")[0] for n in trainable} == {"trf_blocks", "final_norm", "out_head"}
    assert model(torch.zeros(2, 5, dtype=torch.long)).shape == (2, 5, 3)


def test_a_tied_model_gets_its_own_head():
    torch.manual_seed(0)
    model = add_classification_head(GPTModel({**TINY, "tie_weights": True}))
    assert model.out_head.weight.shape == (2, 32) and model.cfg["tie_weights"] is False
    assert not model.tok_emb.weight.requires_grad


@pytest.mark.parametrize(
    "kwargs", [{"num_classes": 1}, {"num_trainable_blocks": 4}, {"num_trainable_blocks": -1}]
)
def test_head_arguments_are_checked(kwargs):
    with pytest.raises(ValueError):
        add_classification_head(GPTModel(TINY), **kwargs)


# --- accuracy and loss ------------------------------------------------------------------------------------


class LastTokenParity(nn.Module):
    """Predicts class 1 when the last token id is odd: a model whose accuracy we know in advance."""

    def forward(self, x):
        odd = (x[:, -1] % 2).float()
        logits = torch.zeros(x.shape[0], x.shape[1], 2)
        logits[:, -1, 0], logits[:, -1, 1] = 1 - odd, odd
        return logits


def known_loader(batch_size=4):
    # last tokens 1, 2, 3, 4, 5, 6, 7, 8 predict 1, 0, 1, 0, 1, 0, 1, 0; six labels of eight agree
    inputs = torch.tensor([[0, 0, t] for t in range(1, 9)])
    labels = torch.tensor([1, 0, 1, 0, 1, 0, 0, 1])
    return DataLoader(TensorDataset(inputs, labels), batch_size=batch_size)


def test_accuracy_on_a_known_batch():
    model = LastTokenParity().train()
    assert calc_accuracy_loader(known_loader(), model, "cpu") == 0.75
    assert calc_accuracy_loader(known_loader(), model, "cpu", num_batches=1) == 1.0
    assert calc_accuracy_loader(known_loader(), model, "cpu", num_batches=99) == 0.75
    assert model.training  # back in the mode it was in
    with pytest.raises(ValueError, match="num_batches"):
        calc_accuracy_loader(known_loader(), model, "cpu", num_batches=0)


def test_loss_is_cross_entropy_of_the_last_token():
    model = tiny_classifier().eval()
    inputs, labels = torch.randint(0, 100, (4, 6)), torch.tensor([0, 1, 1, 0])
    loss = calc_classification_loss_batch(inputs, labels, model, "cpu")
    assert torch.allclose(loss, F.cross_entropy(model(inputs)[:, -1, :], labels))
    loader = DataLoader(TensorDataset(inputs, labels), batch_size=2)
    expected = sum(calc_classification_loss_batch(x, y, model, "cpu").item() for x, y in loader) / 2
    assert calc_classification_loss_loader(loader, model, "cpu") == pytest.approx(expected)
    first = calc_classification_loss_batch(inputs[:2], labels[:2], model, "cpu").item()
    assert calc_classification_loss_loader(loader, model, "cpu", num_batches=1) == pytest.approx(first), (
        "calc_classification_loss_loader must average the first num_batches batches only"
    )
    val_loader = DataLoader(TensorDataset(inputs[2:], labels[2:]), batch_size=2)
    second = calc_classification_loss_batch(inputs[2:], labels[2:], model, "cpu").item()
    model.train()
    assert evaluate_classifier(model, loader, val_loader, "cpu", eval_iter=1) == pytest.approx(
        (first, second)
    ), "evaluate_classifier must average eval_iter batches of each loader"
    assert model.training, "evaluate_classifier must give the model back in training mode"
    empty = DataLoader(TensorDataset(inputs[:0], labels[:0]), batch_size=2)
    with pytest.raises(ValueError, match="no batches"):
        calc_classification_loss_loader(empty, model, "cpu")


# --- training ---------------------------------------------------------------------------------------------


def separable_loaders():
    """Class 1 messages end in token 7, class 0 in token 3: learnable in a few steps."""
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randint(10, 100, (64, 6), generator=gen)
    labels = torch.arange(64) % 2
    inputs[:, -1] = torch.where(labels == 1, 7, 3)
    dataset = TensorDataset(inputs, labels)
    return DataLoader(dataset, batch_size=8, shuffle=True, drop_last=True), DataLoader(dataset, batch_size=8)


def test_training_is_the_books_loop_and_records_every_eval_freq_steps(capsys):
    inputs, labels = separable_loaders()[1].dataset.tensors
    dataset = TensorDataset(inputs, labels)
    train_loader = DataLoader(dataset, batch_size=8, drop_last=True)  # in order: 8 steps per epoch
    val_loader = DataLoader(TensorDataset(inputs.flip(0), labels.flip(0)), batch_size=8)
    model = tiny_classifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    train_losses, val_losses, train_accs, val_accs, examples_seen = train_classifier_simple(
        model, train_loader, val_loader, optimizer, "cpu", 2, eval_freq=5, eval_iter=2, progress=False
    )

    # the book's loop, written out: steps 0, 5, 10, 15 record the mean loss of the first 2 batches
    reference = tiny_classifier()
    ref_optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-2)
    batches = {"train": list(train_loader)[:2], "val": list(val_loader)[:2]}

    def mean_over_first_batches(name, measure):
        reference.eval()
        with torch.no_grad():
            values = [measure(reference(x)[:, -1, :], y) for x, y in batches[name]]
        reference.train()
        return sum(values) / len(values)

    def loss(logits, y):
        return F.cross_entropy(logits, y).item()

    def accuracy(logits, y):
        return (logits.argmax(-1) == y).float().mean().item()

    expected = {"train_losses": [], "val_losses": [], "train_accs": [], "val_accs": []}
    step = -1
    for _ in range(2):
        for x, y in train_loader:
            ref_optimizer.zero_grad()
            F.cross_entropy(reference(x)[:, -1, :], y).backward()
            ref_optimizer.step()
            step += 1
            if step % 5 == 0:
                expected["train_losses"].append(mean_over_first_batches("train", loss))
                expected["val_losses"].append(mean_over_first_batches("val", loss))
        expected["train_accs"].append(mean_over_first_batches("train", accuracy))
        expected["val_accs"].append(mean_over_first_batches("val", accuracy))

    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, msg="train_classifier_simple must take the book's steps")
    got = {
        "train_losses": train_losses,
        "val_losses": val_losses,
        "train_accs": train_accs,
        "val_accs": val_accs,
    }
    for name, values in expected.items():
        assert got[name] == pytest.approx(values, abs=1e-5), (
            f"{name}: train_classifier_simple must record after steps 0, 5, 10, 15 (eval_freq) the "
            f"mean over eval_iter batches: expected {values}, got {got[name]}"
        )
    assert examples_seen == 2 * 64, "examples_seen counts the training examples (messages), not tokens"
    assert train_losses[-1] < train_losses[0] - 0.1, "the loss on the same batches must fall as it trains"
    out = capsys.readouterr().out
    assert "Ep 1 (Step 000000)" in out and "Ep 2 (Step 000015)" in out
    assert not model.tok_emb.weight.requires_grad  # frozen parameters stay frozen...
    fresh = tiny_classifier()
    assert torch.equal(model.tok_emb.weight, fresh.tok_emb.weight)  # ...and unchanged


def test_training_turns_dropout_on_whatever_mode_the_model_is_in():
    """A classifier loaded for more training comes in eval mode (load_classifier); the loop must train it
    in training mode, with dropout, as it trains one that is already in training mode."""
    train_loader, val_loader = separable_loaders()
    weights = []
    for mode in (True, False):
        model = tiny_classifier(drop_rate=0.5).train(mode)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        torch.manual_seed(3)
        train_classifier_simple(
            model, train_loader, val_loader, optimizer, "cpu", 1, eval_freq=100, eval_iter=1, progress=False
        )
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1]), (
        "train_classifier_simple must put the model in training mode (dropout on) before it trains"
    )


def test_training_a_fully_frozen_model_is_refused():
    model = tiny_classifier()
    for p in model.parameters():
        p.requires_grad = False
    train_loader, val_loader = separable_loaders()
    with pytest.raises(ValueError, match="frozen"):
        train_classifier_simple(model, train_loader, val_loader, None, "cpu", 1, 1, 1, progress=False)


# --- classify_review, saving and loading ------------------------------------------------------------------


def test_classify_review_pads_truncates_and_labels():
    model = LastTokenParity()
    model.pos_emb = nn.Embedding(16, 1)  # classify_review reads the context length here
    tokenizer = CharTokenizer()
    odd, even = "a", "b"  # ids 3 and 4 (ord % 95 + 1)
    # padded to the context of 16: the last token is the even 50256
    assert classify_review(odd, model, tokenizer, "cpu") == "not spam"
    assert classify_review(odd, model, tokenizer, "cpu", max_length=1) == "spam"
    assert classify_review(even + odd, model, tokenizer, "cpu", max_length=1) == "not spam"  # cut to "b"
    assert classify_review(odd * 40, model, tokenizer, "cpu", max_length=100) == "spam"  # cut to 16 tokens
    with pytest.raises(ValueError, match="empty"):
        classify_review(" ", model, tokenizer, "cpu")


def test_save_and_load_a_classifier(tmp_path):
    model = tiny_classifier(num_classes=3).eval()
    save_checkpoint(tmp_path / "clf", model)
    restored = load_classifier(tmp_path / "clf")
    ids = torch.randint(0, 100, (2, 7))
    assert torch.equal(restored(ids), model(ids)) and not restored.training
    into = tiny_classifier(seed=5, num_classes=3)
    assert torch.equal(load_classifier(tmp_path / "clf", model=into)(ids), model(ids))


def test_loading_into_another_configuration_is_refused(tmp_path):
    save_checkpoint(tmp_path / "clf", tiny_classifier())
    with pytest.raises(ValueError, match=r"another shape, with num_classes 2 \(this model: 3\): call"):
        load_classifier(tmp_path / "clf", model=tiny_classifier(num_classes=3))
    with pytest.raises(ValueError, match=r"with emb_dim 32 \(this model: 16\): call"):
        load_classifier(tmp_path / "clf", model=tiny_classifier(emb_dim=16))
    with pytest.raises(ValueError, match=r"a model of another shape, with n_layers 3 \(this model: 2\)"):
        load_checkpoint(tmp_path / "clf", tiny_classifier(n_layers=2))


def test_a_language_model_checkpoint_is_not_a_classifier(tmp_path):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "lm", GPTModel(TINY))
    with pytest.raises(ValueError, match="not a classifier"):
        load_classifier(tmp_path / "lm")


def test_the_shared_facade_exports_chapter_6():
    from shared import (  # noqa: F401
        LinearWithLoRA,
        LoRALayer,
        SpamDataset,
        calc_accuracy_loader,
        classify_review,
        replace_linear_with_lora,
        train_classifier_simple,
    )

    assert LABELS == {"ham": 0, "spam": 1}
