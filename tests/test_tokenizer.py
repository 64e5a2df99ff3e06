"""Tests for chapter 2's tokenizers, sliding-window dataset and data loader (ch02_tokenizer/tokenizer.py).

The data comes from ``shared.data.fetch``; CI points ``LLMFS_DATA_MIRROR`` at the offline copies, so no
network is needed.
"""

import re

import pytest
import torch

import shared
from ch02_tokenizer.tokenizer import (
    GPTDatasetV1,
    SimpleTokenizerV1,
    SimpleTokenizerV2,
    build_word_vocab,
    create_dataloader_v1,
    split_words,
)
from shared.data import fetch, gpt2_encoding

SPECIALS = ["<|endoftext|>", "<|unk|>"]


@pytest.fixture(scope="module")
def raw_text():
    return fetch("the-verdict.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def gpt2():
    return gpt2_encoding()


@pytest.fixture(scope="module")
def verdict_ids(raw_text, gpt2):
    return gpt2.encode(raw_text, allowed_special={"<|endoftext|>"})


class FixedTokenizer:
    """Stands in for tiktoken: ``encode`` returns precomputed ids, whatever the text."""

    def __init__(self, ids):
        self.ids = ids

    def encode(self, text, allowed_special=()):
        return self.ids


def book_windows(token_ids, max_length, stride):
    """The book's GPTDatasetV1 construction: one new tensor per input and per target window."""
    inputs, targets = [], []
    for i in range(0, len(token_ids) - max_length, stride):
        inputs.append(torch.tensor(token_ids[i : i + max_length]))
        targets.append(torch.tensor(token_ids[i + 1 : i + max_length + 1]))
    return inputs, targets


# ---------------------------------------------------------------- word tokenizers (sections 2.2-2.4)


def test_split_words_book_examples(raw_text):
    assert split_words("Hello, world. Is this-- a test?") == [
        "Hello", ",", "world", ".", "Is", "this", "--", "a", "test", "?",
    ]  # fmt: skip
    pieces = split_words(raw_text)
    assert len(pieces) == 4690
    assert pieces[:5] == ["I", "HAD", "always", "thought", "Jack"]
    assert all(p.strip() == p and p for p in pieces)


def test_split_words_rejects_non_text():
    with pytest.raises(TypeError, match="text must be a str"):
        split_words(b"bytes")


def test_vocabulary_sizes_and_special_tokens(raw_text):
    vocab = build_word_vocab(raw_text)
    assert len(vocab) == 1130
    assert list(vocab.items())[:3] == [("!", 0), ('"', 1), ("'", 2)]
    assert sorted(vocab.values()) == list(range(1130))

    vocab = build_word_vocab(raw_text, special_tokens=SPECIALS)
    assert len(vocab) == 1132
    assert list(vocab.items())[-3:] == [("yourself", 1129), ("<|endoftext|>", 1130), ("<|unk|>", 1131)]


def test_vocabulary_ignores_duplicate_special_token():
    vocab = build_word_vocab("a b a", special_tokens=["b", "<|unk|>", "<|unk|>"])
    assert vocab == {"a": 0, "b": 1, "<|unk|>": 2}


def test_v1_book_example(raw_text):
    tokenizer = SimpleTokenizerV1(build_word_vocab(raw_text))
    text = """"It's the last he painted, you know," Mrs. Gisburn said with pardonable pride."""
    ids = tokenizer.encode(text)
    assert ids == [1, 56, 2, 850, 988, 602, 533, 746, 5, 1126, 596, 5, 1, 67, 7, 38, 851, 1108, 754, 793, 7]
    assert tokenizer.decode(ids) == (
        '" It\' s the last he painted, you know," Mrs. Gisburn said with pardonable pride.'
    )


@pytest.mark.parametrize("cls", [SimpleTokenizerV1, SimpleTokenizerV2])
def test_round_trip_on_the_verdict(raw_text, cls):
    tokenizer = cls(build_word_vocab(raw_text, special_tokens=SPECIALS))
    ids = tokenizer.encode(raw_text)
    assert len(ids) == 4690
    decoded = tokenizer.decode(ids)
    # The tokenizers drop the original whitespace; everything else comes back, and so do the ids.
    assert re.sub(r"\s+", "", decoded) == re.sub(r"\s+", "", raw_text)
    assert tokenizer.encode(decoded) == ids
    assert tokenizer.decode(torch.tensor(ids)) == decoded  # tensors of ids work too


def test_v1_and_v2_agree_on_known_words(raw_text):
    vocab = build_word_vocab(raw_text, special_tokens=SPECIALS)
    assert SimpleTokenizerV1(vocab).encode(raw_text) == SimpleTokenizerV2(vocab).encode(raw_text)


def test_v2_unknown_words_and_endoftext(raw_text):
    tokenizer = SimpleTokenizerV2(build_word_vocab(raw_text, special_tokens=SPECIALS))
    text = " <|endoftext|> ".join(["Hello, do you like tea?", "In the sunlit terraces of the palace."])
    ids = tokenizer.encode(text)
    assert ids == [1131, 5, 355, 1126, 628, 975, 10, 1130, 55, 988, 956, 984, 722, 988, 1131, 7]
    assert tokenizer.decode(ids) == (
        "<|unk|>, do you like tea? <|endoftext|> In the sunlit terraces of the <|unk|>."
    )
    assert tokenizer.encode("<|endoftext|>") == [1130]
    assert tokenizer.encode("Zyzzyva") == [1131]


def test_v1_unknown_word_error_names_word_and_fix(raw_text):
    tokenizer = SimpleTokenizerV1(build_word_vocab(raw_text))
    with pytest.raises(ValueError, match="'Hello' is not in the vocabulary") as info:
        tokenizer.encode("Hello, do you like tea?")
    assert "SimpleTokenizerV2" in str(info.value)
    assert "Add it to the vocabulary" in str(info.value)


@pytest.mark.parametrize("cls", [SimpleTokenizerV1, SimpleTokenizerV2])
@pytest.mark.parametrize("bad_id", [5000, 1132, -1])
def test_decode_unknown_id_error_names_id_and_size(raw_text, cls, bad_id):
    tokenizer = cls(build_word_vocab(raw_text, special_tokens=SPECIALS))
    with pytest.raises(ValueError, match=rf"token id {bad_id} is not in the vocabulary") as info:
        tokenizer.decode([1, bad_id])
    assert "1,132 tokens" in str(info.value)


def test_decode_rejects_non_integer_ids(raw_text):
    tokenizer = SimpleTokenizerV1(build_word_vocab(raw_text))
    with pytest.raises(TypeError, match="token ids must be integers"):
        tokenizer.decode([1.0])


def test_v2_needs_unk_token(raw_text):
    with pytest.raises(ValueError, match=r"needs '<\|unk\|>' in the vocabulary"):
        SimpleTokenizerV2(build_word_vocab(raw_text))


def test_duplicate_ids_rejected():
    with pytest.raises(ValueError, match="same id"):
        SimpleTokenizerV1({"a": 0, "b": 0})


def test_facade_exports_chapter_2_names():
    assert shared.GPTDatasetV1 is GPTDatasetV1
    assert shared.create_dataloader_v1 is create_dataloader_v1
    assert shared.SimpleTokenizerV2 is SimpleTokenizerV2


# ---------------------------------------------------------------- GPT-2 tokenization (section 2.5)


def test_dataset_tokens_equal_tiktoken_on_the_verdict(raw_text, gpt2, verdict_ids):
    assert len(verdict_ids) == 5145
    dataset = GPTDatasetV1(raw_text, gpt2, max_length=4, stride=1)
    assert dataset.token_ids.tolist() == verdict_ids
    assert dataset.token_ids.dtype == torch.int64


@pytest.mark.parametrize(
    "text",
    [
        "Akwirw ier",
        "Hello, do you like tea? <|endoftext|> In the sunlit terracesof someunknownPlace.",
        "<|endoftext|><|endoftext|>",
        "naïve café, 東京 and emoji 🦙🦙!",
        "  leading and\ttrailing whitespace \n\n",
        "x" * 300,
    ],
)
def test_dataset_tokens_equal_tiktoken_on_edge_strings(gpt2, text):
    expected = gpt2.encode(text, allowed_special={"<|endoftext|>"})
    dataset = GPTDatasetV1(text, gpt2, max_length=1, stride=1)
    assert dataset.token_ids.tolist() == expected
    # With max_length 1 and stride 1, the inputs followed by the last target spell out every id.
    ids = [x.item() for x, _ in dataset] + [dataset[-1][1].item()]
    assert ids == expected
    assert gpt2.decode(ids) == text


def test_akwirw_ier_pieces(gpt2):
    ids = gpt2.encode("Akwirw ier")
    assert ids == [33901, 86, 343, 86, 220, 959]
    assert [gpt2.decode([i]) for i in ids] == ["Ak", "w", "ir", "w", " ", "ier"]


# ---------------------------------------------------------------- sliding-window dataset (section 2.6)


@pytest.mark.parametrize(
    ("max_length", "stride"),
    [
        (4, 1),
        (4, 4),
        (4, 5),
        (2, 2),
        (8, 2),
        (256, 128),
        (256, 1),
        (1, 1),
        (7, 3),
        (16, 100),
        (5144, 1),
        (5144, 9),
    ],
)
def test_windows_equal_book_reference(verdict_ids, max_length, stride):
    dataset = GPTDatasetV1("ignored", FixedTokenizer(verdict_ids), max_length, stride)
    ref_inputs, ref_targets = book_windows(verdict_ids, max_length, stride)
    assert len(dataset) == len(ref_inputs) > 0
    for i in range(len(dataset)):
        x, y = dataset[i]
        assert x.dtype == y.dtype == ref_inputs[i].dtype == torch.int64
        assert torch.equal(x, ref_inputs[i]) and torch.equal(y, ref_targets[i])
    # Negative indices and plain iteration behave like the book's lists.
    assert torch.equal(dataset[-1][0], ref_inputs[-1])
    assert sum(1 for _ in dataset) == len(ref_inputs)
    with pytest.raises(IndexError):
        dataset[len(dataset)]
    with pytest.raises(IndexError):
        dataset[-len(dataset) - 1]


@pytest.mark.parametrize("num_tokens", range(5, 14))
def test_window_count_matches_book_loop_at_boundaries(num_tokens):
    ids = list(range(num_tokens))
    for max_length in range(1, num_tokens):
        for stride in range(1, 6):
            dataset = GPTDatasetV1("", FixedTokenizer(ids), max_length, stride)
            starts = range(0, num_tokens - max_length, stride)
            assert len(dataset) == len(starts)
            # the last window starts where the book's loop starts its last one, and its target ends inside
            # the text (the ids are the positions)
            inputs, targets = dataset[-1]
            assert inputs.tolist() == list(range(starts[-1], starts[-1] + max_length))
            assert targets.tolist() == list(range(starts[-1] + 1, starts[-1] + max_length + 1))


def test_shortest_text_gives_one_window():
    dataset = GPTDatasetV1("", FixedTokenizer([7, 8, 9]), max_length=2, stride=5)
    assert len(dataset) == 1
    assert dataset[0][0].tolist() == [7, 8] and dataset[0][1].tolist() == [8, 9]


@pytest.mark.parametrize("max_length", [5145, 10_000])
def test_too_short_text_error(verdict_ids, max_length):
    with pytest.raises(ValueError) as info:
        GPTDatasetV1("ignored", FixedTokenizer(verdict_ids), max_length, 1)
    message = str(info.value)
    assert "has 5,145 tokens" in message
    assert f"at least max_length + 1 = {max_length + 1:,}" in message
    assert "smaller max_length" in message and "longer text" in message


def test_too_short_text_error_for_real_text(gpt2):
    with pytest.raises(ValueError, match=r"the text has 1 token, .* at least max_length \+ 1 = 257"):
        GPTDatasetV1("Hello", gpt2, max_length=256, stride=128)
    with pytest.raises(ValueError, match=r"the text has 0 tokens"):
        GPTDatasetV1("", gpt2, max_length=1, stride=1)


@pytest.mark.parametrize("name", ["max_length", "stride"])
@pytest.mark.parametrize("bad", [0, -3, 2.5, 4.0, "4", None, True])
def test_non_positive_integer_arguments(verdict_ids, name, bad):
    args = {"max_length": 4, "stride": 2, name: bad}
    with pytest.raises(ValueError, match=rf"{name} must be a positive integer, got {re.escape(repr(bad))}"):
        GPTDatasetV1("ignored", FixedTokenizer(verdict_ids), **args)


def test_integer_like_arguments_accepted(verdict_ids):
    dataset = GPTDatasetV1("ignored", FixedTokenizer(verdict_ids), torch.tensor(4), torch.tensor(2))
    assert (dataset.max_length, dataset.stride) == (4, 2)
    assert len(dataset) == len(range(0, 5145 - 4, 2))


# ---------------------------------------------------------------- memory: windows are views


def test_one_million_tokens_stride_one_keeps_only_the_id_tensor():
    num_tokens, max_length = 1_000_000, 256
    ids = torch.randint(0, 50257, (num_tokens,), generator=torch.Generator().manual_seed(0)).tolist()
    dataset = GPTDatasetV1("ignored", FixedTokenizer(ids), max_length=max_length, stride=1)
    assert len(dataset) == num_tokens - max_length

    # The dataset's state: one int64 tensor of the ids, nothing per window.
    state = vars(dataset)
    tensors = [v for v in state.values() if isinstance(v, torch.Tensor)]
    assert len(tensors) == 1 and tensors[0] is dataset.token_ids
    assert dataset.token_ids.shape == (num_tokens,) and dataset.token_ids.dtype == torch.int64
    assert dataset.token_ids.untyped_storage().nbytes() == 8 * num_tokens
    assert not any(isinstance(v, (list, tuple, dict, set)) for v in state.values())

    # Items are views into that tensor's storage, at the right offset.
    base = dataset.token_ids.untyped_storage().data_ptr()
    for idx in (0, 123_456, len(dataset) - 1):
        x, y = dataset[idx]
        assert x.untyped_storage().data_ptr() == base and y.untyped_storage().data_ptr() == base
        assert (x.storage_offset(), y.storage_offset()) == (idx, idx + 1)
        assert x.tolist() == ids[idx : idx + max_length] and y.tolist() == ids[idx + 1 : idx + max_length + 1]


# ---------------------------------------------------------------- data loader


def test_dataloader_first_batch_matches_book(raw_text):
    loader = create_dataloader_v1(raw_text, batch_size=8, max_length=4, stride=4, shuffle=False)
    inputs, targets = next(iter(loader))
    assert inputs[:3].tolist() == [[40, 367, 2885, 1464], [1807, 3619, 402, 271], [10899, 2138, 257, 7026]]
    assert targets[0].tolist() == [367, 2885, 1464, 1807]


@pytest.mark.parametrize(
    ("drop_last", "batch_shapes"), [(True, [(4, 256)] * 9), (False, [(4, 256)] * 9 + [(3, 256)])]
)
def test_dataloader_defaults_shapes_dtypes_and_drop_last(raw_text, verdict_ids, drop_last, batch_shapes):
    loader = create_dataloader_v1(raw_text, drop_last=drop_last)  # book defaults: 4, 256, 128
    assert len(loader.dataset) == len(range(0, 5145 - 256, 128)) == 39
    batches = list(loader)
    assert [tuple(x.shape) for x, _ in batches] == batch_shapes
    for x, y in batches:
        assert x.dtype == y.dtype == torch.int64
        assert x.shape == y.shape
        assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one


def test_dataloader_without_shuffle_follows_the_text(raw_text, verdict_ids):
    loader = create_dataloader_v1(
        raw_text, batch_size=5, max_length=8, stride=3, shuffle=False, drop_last=False
    )
    ref_inputs, ref_targets = book_windows(verdict_ids, 8, 3)
    inputs = torch.cat([x for x, _ in loader])
    targets = torch.cat([y for _, y in loader])
    assert torch.equal(inputs, torch.stack(ref_inputs)) and torch.equal(targets, torch.stack(ref_targets))


def test_shuffle_reproducible_under_seed(raw_text):
    loader = create_dataloader_v1(raw_text, batch_size=4, max_length=16, stride=16, shuffle=True)

    def epoch(seed):
        torch.manual_seed(seed)
        return torch.cat([x for x, _ in loader])

    first, again, other = epoch(123), epoch(123), epoch(456)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    # A shuffled epoch holds the same windows as an ordered one (minus those drop_last leaves out).
    ordered = create_dataloader_v1(raw_text, batch_size=4, max_length=16, stride=16, shuffle=False)
    assert not torch.equal(first, torch.cat([x for x, _ in ordered]))
    all_windows = {
        tuple(row) for row in ordered.dataset.token_ids[: len(ordered.dataset) * 16].view(-1, 16).tolist()
    }
    assert {tuple(row) for row in first.tolist()} <= all_windows
    assert len(first) == len(ordered.dataset) // 4 * 4


def test_create_dataloader_passes_num_workers_on():
    text = fetch("the-verdict.txt").read_text(encoding="utf-8")[:2000]
    assert create_dataloader_v1(text, batch_size=2, max_length=8, stride=8).num_workers == 0
    loader = create_dataloader_v1(text, batch_size=2, max_length=8, stride=8, shuffle=False, num_workers=2)
    assert loader.num_workers == 2
