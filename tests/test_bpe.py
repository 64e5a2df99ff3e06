"""Tests for the byte-level BPE tokenizer written from scratch (ch02_tokenizer/bpe.py).

References: tiktoken's ``gpt2`` encoding for ids and special-token rules, and the module's naive trainer
``train_bpe_naive`` (recounts every pair after every merge) for the merges the incremental trainer learns.
The data comes from ``shared.data.fetch``; CI points ``LLMFS_DATA_MIRROR`` at the offline copies.
"""

import json
import os
import random
import warnings

import pytest
import regex

import shared
from ch02_tokenizer.bpe import GPT2_SPLIT_PATTERN, BPETokenizer, _PieceCache, train_bpe_naive
from shared.data import fetch, gpt2_encoding

EOT = "<|endoftext|>"
COURSE_FILES = ["the-verdict.txt", "SMSSpamCollection", "instruction-data.json"]

EDGE_CASES = [
    "",
    " ",
    "      ",
    "\n",
    "\n\n\n",
    "   \n\n  \n",
    "a  \n\t b   ",
    "trailing spaces   ",
    "  leading",
    "café naïve résumé, Ελληνικά, русский, 日本語のテキスト",
    "e\u0301 combining accent",
    "🐍 👍🏽 family: 👨\u200d👩\u200d👧 🏳️\u200d🌈",
    "<|endoftext",
    "<|endoftext|",
    "endoftext|>",
    "< |endoftext| >",
    "<|endoftext |>",
    "it's I'LL we've they'RE don't 'quoted'",
    "１２３ fullwidth digits, ²³ superscripts, ½",
    "tabs\tand\x0bvertical\x0cfeeds\r\nand\x85next\u2028line\u3000ideographic\xa0nbsp",
    "\x00\x01\x1c\x1d\x1e\x1f\x7f control",
    "12345678901234567890 3.14159 -42 1e10",
    "$$$ !!! ??? ... ---- ==== ____",
]


@pytest.fixture(scope="module")
def reference():
    return gpt2_encoding()


@pytest.fixture(scope="module")
def gpt2():
    return BPETokenizer.from_gpt2_files(fetch("encoder.json"), fetch("vocab.bpe"))


@pytest.fixture(scope="module")
def verdict():
    return fetch("the-verdict.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def trained(verdict):
    tok = BPETokenizer()
    tok.train(verdict, vocab_size=600, special_tokens=[EOT])
    return tok


# ---------------------------------------------------------------- GPT-2's files give tiktoken's ids


@pytest.mark.parametrize("name", COURSE_FILES)
def test_gpt2_matches_tiktoken_on_course_text(gpt2, reference, name):
    text = fetch(name).read_text(encoding="utf-8")
    ids = gpt2.encode(text)
    assert ids == reference.encode(text)
    assert gpt2.decode(ids) == text


@pytest.mark.parametrize("text", EDGE_CASES, ids=range(len(EDGE_CASES)))
def test_gpt2_matches_tiktoken_on_edge_cases(gpt2, reference, text):
    assert gpt2.encode(text) == reference.encode(text)
    assert gpt2.decode(gpt2.encode(text)) == text


def test_gpt2_matches_tiktoken_on_random_text(gpt2, reference):
    # Strings built from characters that stress the split pattern: spaces of every kind, letters and
    # digits of several scripts, apostrophes, symbols, emoji, and the special token's own characters.
    pool = list("aeiouxyzAEIOU '’.,!?-_|<>\t\n\r\x0b\x0c\x85\xa0\u2028\u3000\u200b0123456789")
    pool += list("éüßçñΩжя日本語한국٣४ⅫĀĠ🐍👍🏽\u0301\u200d") + ["'s", "'ll", "'RE", EOT, "  ", "\n\n"]
    rng = random.Random(1234)
    for _ in range(400):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(0, 40)))
        assert gpt2.encode(text, disallowed_special=()) == reference.encode(text, disallowed_special=()), text


def test_gpt2_vocabulary(gpt2, reference):
    assert gpt2.vocab_size == reference.n_vocab == 50257
    assert len(gpt2.merges) == 50000
    assert gpt2.special_tokens == {EOT: 50256}
    for i in [0, 1, 188, 220, 256, 262, 1849, 31373, 50255]:
        assert gpt2.vocab[i] == reference.decode_single_token_bytes(i)
    assert gpt2.merges[0] == (b" ", b"t")  # the first line of vocab.bpe is "Ġ t"


# ---------------------------------------------------------------- special tokens, as tiktoken does


SPECIAL_CASES = [
    ("a<|endoftext|>b", {}),
    ("a<|endoftext|>b", {"allowed_special": {EOT}}),
    ("a<|endoftext|>b", {"allowed_special": "all"}),
    ("a<|endoftext|>b", {"disallowed_special": ()}),
    ("a<|endoftext|>b", {"allowed_special": {EOT, "<|not special|>"}}),
    ("a<|endoftext|>b", {"allowed_special": "all", "disallowed_special": {EOT}}),
    ("a<|endoftext|>b", {"disallowed_special": set()}),
    ("<|endoftext|><|endoftext|> <|endoftext|>\n<|endoftext|>", {"allowed_special": "all"}),
    ("<|endoftext|><|endoftext|> <|endoftext|>\n<|endoftext|>", {"disallowed_special": ()}),
    ("no special token here", {}),
    ("<|endoftext <|endoftext|", {}),
    ("hello world", {"disallowed_special": {"world"}}),  # tiktoken checks any string it is given
]


@pytest.mark.parametrize(("text", "kwargs"), SPECIAL_CASES, ids=range(len(SPECIAL_CASES)))
def test_special_tokens_follow_tiktoken(gpt2, reference, text, kwargs):
    try:
        expected = reference.encode(text, **kwargs)
    except ValueError as err:
        with pytest.raises(ValueError) as ours:
            gpt2.encode(text, **kwargs)
        token = regex.search(r"disallowed special token ('[^']*')", str(err)).group(1)
        assert f"disallowed special token {token}" in str(ours.value)
        assert "allowed_special" in str(ours.value) and "disallowed_special=()" in str(ours.value)
    else:
        assert gpt2.encode(text, **kwargs) == expected


def test_default_rejects_special_token_text(gpt2):
    with pytest.raises(ValueError, match="disallowed special token '<\\|endoftext\\|>'"):
        gpt2.encode("the end<|endoftext|>")
    assert gpt2.encode("the end<|endoftext|>", allowed_special={EOT})[-1] == 50256


def test_special_token_argument_types(gpt2):
    with pytest.raises(TypeError, match="allowed_special"):
        gpt2.encode("x", allowed_special=EOT)
    with pytest.raises(TypeError, match="disallowed_special"):
        gpt2.encode("x", disallowed_special=EOT)
    with pytest.raises(TypeError, match="str"):
        gpt2.encode(b"bytes")


# ---------------------------------------------------------------- training


def test_training_is_deterministic(verdict):
    a, b = BPETokenizer(), BPETokenizer()
    a.train(verdict, vocab_size=500)
    b.train(verdict, vocab_size=500)
    assert a.merges == b.merges and dict(a.vocab) == dict(b.vocab)


def test_ties_go_to_the_greatest_pair():
    # pieces "ab", " ab", " cd" x2: the pairs (a,b), ( ,c) and (c,d) all occur twice; (c,d) is greatest.
    # Then (a,b) and ( ,cd) tie at 2, and b"a" > b" ".
    tok = BPETokenizer()
    tok.train("ab ab cd cd", vocab_size=258)
    assert tok.merges == [(b"c", b"d"), (b"a", b"b")]
    # A token sorts after its own prefix: once (a,b) is merged, (ab,c) and (a,d) tie at 2 and b"ab" > b"a".
    tok.train("\n".join(["ab"] * 4 + ["abc"] * 2 + ["ad"] * 2), vocab_size=258)
    assert tok.merges == [(b"a", b"b"), (b"ab", b"c")]
    assert train_bpe_naive("\n".join(["ab"] * 4 + ["abc"] * 2 + ["ad"] * 2), 258) == tok.merges


@pytest.mark.parametrize("seed", range(6))
def test_incremental_trainer_equals_naive_on_tie_heavy_text(seed):
    # Words over a tiny alphabet produce many equal counts, overlapping pairs (aaa, abab) and tokens that
    # are prefixes of one another, so every merge exercises the tie rule and the neighbour updates.
    rng = random.Random(seed)
    words = ["".join(rng.choice("aab") for _ in range(rng.randint(1, 9))) for _ in range(60)]
    text = " ".join(rng.choice(words) for _ in range(400))
    tok = BPETokenizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the text runs out of pairs before 2,000
        tok.train(text, vocab_size=2000)
    assert tok.merges == train_bpe_naive(text, 2000)
    assert 0 < len(tok.merges) < 2000 - 256


def test_incremental_trainer_equals_naive_on_the_verdict(verdict):
    text = verdict[:8000] + EOT + verdict[8000:12000]
    tok = BPETokenizer()
    tok.train(text, vocab_size=400, special_tokens=[EOT])
    assert tok.merges == train_bpe_naive(text, 400, [EOT])


def test_naive_trainer_options_and_errors(verdict):
    text = verdict[:3000]
    full = train_bpe_naive(text, 300)
    assert len(full) == 300 - 256
    assert train_bpe_naive(text, 300, max_merges=10) == full[:10]
    assert train_bpe_naive(text, 300, max_merges=0) == []
    # overlapping special tokens are cut as the fast trainer cuts them (the longer one first)
    specials = ["<|a|>", "<|a|><|b|>"]
    mixed = "<|a|><|b|>x<|a|>y<|a|><|b|>xy" * 3
    tok = BPETokenizer()
    tok.train(mixed, vocab_size=259, special_tokens=specials)
    assert train_bpe_naive(mixed, 259, specials) == tok.merges == [(b"x", b"y")]
    with pytest.raises(ValueError, match="max_merges"):
        train_bpe_naive(text, 300, max_merges=-1)
    with pytest.raises(ValueError, match="at least 258"):
        train_bpe_naive(text, 257, special_tokens=[EOT, "<|pad|>"])
    with pytest.raises(TypeError, match="text must be a str"):
        train_bpe_naive(b"bytes", 300)


def test_vocab_size_accounting(verdict):
    tok = BPETokenizer()
    tok.train(verdict, vocab_size=300, special_tokens=[EOT, "<|pad|>"])
    assert tok.vocab_size == len(tok.vocab) == 300
    assert len(tok.merges) == 300 - 256 - 2
    assert tok.special_tokens == {EOT: 298, "<|pad|>": 299}
    assert sorted(tok.vocab) == list(range(300))
    assert all(tok.vocab[256 + i] == a + b for i, (a, b) in enumerate(tok.merges))

    tok.train(verdict, vocab_size=257, special_tokens=[EOT])  # the smallest possible: no merges
    assert tok.merges == [] and tok.vocab_size == 257
    with pytest.raises(ValueError, match="at least 258"):
        tok.train(verdict, vocab_size=257, special_tokens=[EOT, "<|pad|>"])
    with pytest.raises(ValueError, match="at least 256"):
        tok.train(verdict, vocab_size=100)


def test_training_stops_when_pairs_run_out():
    tok = BPETokenizer()
    with pytest.warns(RuntimeWarning, match="only allowed 2 merges"):
        tok.train("abc", vocab_size=1000)
    assert tok.merges == [(b"b", b"c"), (b"a", b"bc")]
    assert tok.encode("abc") == [257]


def test_special_tokens_are_never_split_or_merged(verdict):
    paragraphs = verdict.split("\n\n")
    text = EOT.join(paragraphs)
    tok = BPETokenizer()
    tok.train(text, vocab_size=500, special_tokens=[EOT])
    assert not any(b"<|" in a + b or b"|>" in a + b for a, b in tok.merges)
    ids = tok.encode(text, allowed_special="all")
    assert ids.count(tok.special_tokens[EOT]) == len(paragraphs) - 1
    assert tok.decode(ids) == text
    # without the declaration the separator's characters do get merged
    plain = BPETokenizer()
    plain.train(text, vocab_size=500)
    assert any(b"|>" in a + b for a, b in plain.merges)


def test_train_rejects_bad_input():
    tok = BPETokenizer()
    with pytest.raises(TypeError, match="text must be a str"):
        tok.train(b"bytes", vocab_size=300)
    with pytest.raises(TypeError, match="vocab_size"):
        tok.train("text", vocab_size=300.0)
    with pytest.raises(TypeError, match="list of strings"):
        tok.train("text", vocab_size=300, special_tokens=EOT)
    with pytest.raises(ValueError, match="duplicates"):
        tok.train("text", vocab_size=300, special_tokens=[EOT, EOT])
    with pytest.raises(TypeError, match="non-empty string"):
        tok.train("text", vocab_size=300, special_tokens=[""])


# ---------------------------------------------------------------- encoding and decoding


def replay_training(piece, merges):
    # The tokens that training leaves in `piece`: it rewrites every piece with each merge in turn, all
    # occurrences left to right (the encoder instead applies the lowest-ranked merge present, repeatedly).
    tokens = [bytes([c]) for c in piece.encode("utf-8")]
    for a, b in merges:
        i = 0
        while i < len(tokens) - 1:
            if tokens[i] == a and tokens[i + 1] == b:
                tokens[i : i + 2] = [a + b]
            i += 1
    return tokens


def test_encoding_replays_training(verdict, trained):
    # Encoding the training text splits each piece exactly as the trainer left it: the same merges in the
    # same order, applied to the same pieces.
    assert train_bpe_naive(verdict, 600, [EOT]) == trained.merges
    # bytes identify tokens here (no two ids share bytes), and the story holds no special token to cut out
    assert len(set(trained.vocab.values())) == trained.vocab_size and EOT not in verdict
    pieces = regex.findall(GPT2_SPLIT_PATTERN, verdict)
    replayed = {piece: replay_training(piece, trained.merges) for piece in set(pieces)}
    expected = [token for piece in pieces for token in replayed[piece]]
    encoded = [trained.vocab[i] for i in trained.encode(verdict)]
    assert encoded == expected  # the same tokens, in the same order (so also the same counts)
    assert b"".join(encoded) == verdict.encode("utf-8")
    assert len(encoded) < len(verdict.encode("utf-8")) / 2


def test_round_trip_of_arbitrary_unicode(trained):
    rng = random.Random(7)
    texts = [*EDGE_CASES, "".join(chr(c) for c in range(0, 0x250))]
    texts += [
        "".join(chr(rng.choice([rng.randint(0, 0x2FFF), rng.randint(0x1F300, 0x1FAFF)])) for _ in range(60))
        for _ in range(50)
    ]
    texts = [t.encode("utf-8", errors="replace").decode("utf-8") for t in texts]  # no lone surrogates
    for text in texts:
        assert trained.decode(trained.encode(text, disallowed_special=())) == text


def test_decode_replaces_invalid_utf8(trained, gpt2):
    assert trained.decode([0xFF]) == "\ufffd"
    assert trained.decode([ord("a"), 0xC3]) == "a\ufffd"  # the first byte of a two-byte character
    snake = gpt2.encode("🐍")
    assert len(snake) > 1 and gpt2.decode(snake[:1]).endswith("\ufffd")
    assert trained.decode_bytes([0xFF, 0xFE]) == b"\xff\xfe"


def test_decode_rejects_bad_ids(trained):
    with pytest.raises(ValueError, match="unknown token id 600"):
        trained.decode([1, 2, 600])
    with pytest.raises(ValueError, match="unknown token id -1"):
        trained.decode([-1])
    with pytest.raises(TypeError, match="integers"):
        trained.decode([1, 2.5])
    with pytest.raises(TypeError, match="sequence of token ids"):
        trained.decode("hello")


def test_decode_accepts_integer_like_ids(trained):
    torch = pytest.importorskip("torch")
    ids = trained.encode("Jack Gisburn")
    assert trained.decode(torch.tensor(ids)) == "Jack Gisburn"
    assert trained.decode(iter(ids)) == "Jack Gisburn"


def test_public_attributes(trained):
    assert all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in trained.merges)
    assert all(isinstance(i, int) and isinstance(t, bytes) for i, t in trained.vocab.items())
    with pytest.raises(TypeError):
        trained.vocab[0] = b"x"  # read-only view
    trained.merges.clear()  # a copy: the tokenizer keeps its merges
    assert len(trained.merges) == 600 - 257
    assert "vocab_size=600" in repr(trained)


def test_shared_facade_exports_the_class():
    assert shared.BPETokenizer is BPETokenizer


# ---------------------------------------------------------------- files


def test_save_load_round_trip(tmp_path, trained, verdict):
    path = trained.save(tmp_path / "tok.json")
    loaded = BPETokenizer.load(path)
    assert loaded.merges == trained.merges
    assert dict(loaded.vocab) == dict(trained.vocab)
    assert loaded.special_tokens == trained.special_tokens
    assert loaded.encode(verdict) == trained.encode(verdict)
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"]  # no temporary file left behind


def test_gpt2_save_load_round_trip(tmp_path, gpt2, reference, verdict):
    loaded = BPETokenizer.load(gpt2.save(str(tmp_path / "gpt2.json")))
    assert loaded.encode(verdict) == reference.encode(verdict)
    assert loaded.special_tokens == {EOT: 50256}


def test_save_is_atomic(tmp_path, trained, monkeypatch):
    path = trained.save(tmp_path / "tok.json")
    before = path.read_bytes()
    other = BPETokenizer()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        other.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"]


def _write_document(path, doc, fix_checksum=True):
    import hashlib

    doc = dict(doc)
    doc.pop("sha256", None)
    if fix_checksum:
        canonical = json.dumps(doc, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
        doc["sha256"] = hashlib.sha256(canonical.encode("ascii")).hexdigest()
    path.write_text(json.dumps(doc), encoding="utf-8")


def test_corrupted_files_give_clear_errors(tmp_path, trained):
    path = trained.save(tmp_path / "tok.json")
    good = path.read_text(encoding="utf-8")
    doc = json.loads(good)

    path.write_text(good[: len(good) // 2], encoding="utf-8")  # truncated
    with pytest.raises(ValueError, match="tok.json.*truncated or damaged"):
        BPETokenizer.load(path)

    path.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(ValueError, match="tok.json.*truncated or damaged"):
        BPETokenizer.load(path)

    garbled = dict(
        doc, merges=[[m[0], m[1], m[2] + 1 if i == 5 else m[2]] for i, m in enumerate(doc["merges"])]
    )
    _write_document(path, garbled, fix_checksum=False)
    with pytest.raises(ValueError, match="tok.json: checksum mismatch"):
        BPETokenizer.load(path)

    _write_document(path, dict(doc, format="something else"))
    with pytest.raises(ValueError, match="tok.json: not a BPETokenizer file"):
        BPETokenizer.load(path)

    _write_document(path, dict(doc, version=99))
    with pytest.raises(ValueError, match="tok.json: unsupported version 99"):
        BPETokenizer.load(path)

    _write_document(path, dict(doc, byte_ids=doc["byte_ids"][:-1]))
    with pytest.raises(ValueError, match="256 ids"):
        BPETokenizer.load(path)

    # structurally fine, checksum right, but a merge uses an id defined only later
    _write_document(path, dict(doc, merges=[[300, 1, 256], *doc["merges"][1:]]))
    with pytest.raises(ValueError, match="tok.json: merge 0 .*no byte or earlier merge"):
        BPETokenizer.load(path)

    path.write_text("[1, 2, 3]", encoding="utf-8")
    with pytest.raises(ValueError, match="not a BPETokenizer file"):
        BPETokenizer.load(path)


def test_bad_gpt2_files_give_clear_errors(tmp_path):
    encoder = tmp_path / "encoder.json"
    vocab = tmp_path / "vocab.bpe"
    encoder.write_bytes(fetch("encoder.json").read_bytes())
    lines = fetch("vocab.bpe").read_text(encoding="utf-8").split("\n")

    vocab.write_text("\n".join(lines[:10] + ["Ġt"] + lines[11:]), encoding="utf-8")
    with pytest.raises(ValueError, match="vocab.bpe, line 11: expected two"):
        BPETokenizer.from_gpt2_files(encoder, vocab)

    vocab.write_text("\n".join(lines[:10] + ["Ġt zzzzqq"] + lines[11:]), encoding="utf-8")
    with pytest.raises(ValueError, match="line 11: token 'zzzzqq' is missing"):
        BPETokenizer.from_gpt2_files(encoder, vocab)

    vocab.write_text("\n".join(lines[:30000]), encoding="utf-8")  # merges missing at the end
    with pytest.raises(ValueError, match="encoder.json: 20001 tokens .* is one of the two files truncated"):
        BPETokenizer.from_gpt2_files(encoder, vocab)

    vocab.write_bytes(b"#version: 0.2\n\xff\xfe t\n")
    with pytest.raises(ValueError, match="vocab.bpe: not a valid vocab.bpe"):
        BPETokenizer.from_gpt2_files(encoder, vocab)

    encoder.write_text(fetch("encoder.json").read_text(encoding="utf-8")[:5000], encoding="utf-8")
    with pytest.raises(ValueError, match="encoder.json: not a valid encoder.json"):
        BPETokenizer.from_gpt2_files(encoder, vocab)


def test_piece_cache_stays_bounded_and_correct():
    """The encoder's piece cache is emptied when full, so encoding a huge text cannot grow it without end."""
    tok = BPETokenizer()
    tok.train("low lower lowest newer newest wider " * 20, vocab_size=270)
    assert tok._cache._max_size == 200_000
    cache = _PieceCache(*tok._cache._model, max_size=3)
    pieces = [" low", " lower", " lowest", " newer", " newest", " wider", " low"]
    for piece in pieces:
        assert cache[piece] == tok._cache[piece]
        assert len(cache) <= 3
    assert tok.decode(tok.encode("lowest newer")) == "lowest newer"
