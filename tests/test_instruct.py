"""Chapter 7's data pipeline, generation and offline scores (ch07_instruct/instruct.py).

custom_collate_fn is checked on hand-made batches against the book's rules, written out by hand; the
streaming generator against chapter 5's ``generate``; ROUGE-L and token F1 on pairs whose scores are worked
out by hand. Models are tiny GPTs with GPT-2's vocabulary (so the real tokenizer can be used) and random
weights."""

import json

import pytest
import torch

from ch04_gpt.gpt import GPTModel, get_gpt_config
from ch05_pretraining import fast_generation
from ch07_instruct.instruct import (
    PHI3_RESPONSE_HEADER,
    PROMPT_STYLES,
    RESPONSE_HEADER,
    InstructionDataset,
    check_instruction_data,
    custom_collate_fn,
    format_input,
    format_input_phi3,
    generate_response,
    generate_test_responses,
    load_instruction_data,
    offline_scores,
    rouge_l,
    save_responses,
    stream_generate,
    stream_response,
    token_f1,
)
from shared import calc_loss_batch, generate, text_to_token_ids
from shared.data import gpt2_encoding

PAD, IGN = 50256, -100
ENTRIES = [
    {"instruction": "Name a colour.", "input": "", "output": "Blue."},
    {
        "instruction": "Spell the word correctly.",
        "input": "freind",
        "output": "The correct spelling is 'friend'.",
    },
]


@pytest.fixture(scope="module")
def tokenizer():
    return gpt2_encoding()


def tiny_model(context_length=64, seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = get_gpt_config(
        "124M", emb_dim=16, n_layers=1, n_heads=2, context_length=context_length, qkv_bias=True, **overrides
    )
    return GPTModel(cfg).eval()


# --- format_input and the data checks ---------------------------------------------------------------


def test_format_input_with_and_without_input():
    preamble = (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\n"
    )
    assert format_input(ENTRIES[0]) == preamble + "Name a colour."
    assert format_input(ENTRIES[1]) == preamble + "Spell the word correctly.\n\n### Input:\nfreind"
    assert format_input({"instruction": "Name a colour."}) == format_input(ENTRIES[0])  # no input key: none
    assert RESPONSE_HEADER == "\n\n### Response:\n"


def test_format_input_phi3():
    assert format_input_phi3(ENTRIES[0]) == "<|user|>\nName a colour."
    assert format_input_phi3(ENTRIES[1]) == "<|user|>\nSpell the word correctly.\nfreind"
    assert PROMPT_STYLES["phi3"] == (format_input_phi3, PHI3_RESPONSE_HEADER)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"instruction": "x", "output": "y"}, r"entry 1 has no 'input' key"),
        ({"input": "", "output": "y"}, r"entry 1 has no 'instruction' key"),
        ({"instruction": "x", "input": ""}, r"entry 1 has no 'output' key"),
        ({"instruction": "x", "input": "", "output": ""}, r"entry 1 has an empty 'output'"),
        ({"instruction": "x", "input": "", "output": "  \n"}, r"entry 1 has an empty 'output'"),
        ({"instruction": "x", "input": None, "output": "y"}, r"entry 1: 'input' must be a string"),
        (["x", "", "y"], r"entry 1 is a list"),
    ],
)
def test_bad_entries_are_named_by_index_and_key(bad, message):
    with pytest.raises(ValueError, match=message):
        check_instruction_data([ENTRIES[0], bad])


def test_load_instruction_data(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps(ENTRIES), encoding="utf-8")
    assert load_instruction_data(path) == ENTRIES
    path.write_text(json.dumps({"not": "a list"}), encoding="utf-8")
    with pytest.raises(ValueError, match="must be a list"):
        load_instruction_data(path)


def test_the_book_data_set_loads_and_passes_the_checks():
    from shared.data import fetch

    data = load_instruction_data(fetch("instruction-data.json"))
    assert len(data) == 1100, "the book's instruction data set has 1,100 entries"
    assert data[50] == {
        "instruction": "Identify the correct spelling of the following word.",
        "input": "Ocassion",
        "output": "The correct spelling is 'Occasion.'",
    }, "entry 50 is the book's example of section 7.2"


# --- InstructionDataset ----------------------------------------------------------------------------------


def test_dataset_tokenizes_prompt_header_and_output(tokenizer):
    dataset = InstructionDataset(ENTRIES, tokenizer)
    assert len(dataset) == 2
    text = format_input(ENTRIES[1]) + RESPONSE_HEADER + ENTRIES[1]["output"]
    assert dataset[1] == tokenizer.encode(text)


def test_dataset_with_masking_returns_the_prompt_length(tokenizer):
    dataset = InstructionDataset(ENTRIES, tokenizer, mask_instruction=True)
    prompt_length, ids = dataset[0]
    prompt = format_input(ENTRIES[0]) + RESPONSE_HEADER
    assert ids[:prompt_length] == tokenizer.encode(prompt)  # the prompt's tokens are a prefix of the whole
    assert tokenizer.decode(ids[prompt_length:]) == "Blue."


def test_dataset_refuses_bad_entries(tokenizer):
    with pytest.raises(ValueError, match="entry 0 has an empty 'output'"):
        InstructionDataset([{"instruction": "x", "input": "", "output": ""}], tokenizer)


# --- custom_collate_fn -----------------------------------------------------------------------------------


def test_collate_pads_shifts_and_masks_the_book_example():
    inputs, targets = custom_collate_fn([[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]])
    assert inputs.tolist() == [
        [0, 1, 2, 3, 4],
        [5, 6, PAD, PAD, PAD],
        [7, 8, 9, PAD, PAD],
    ]
    assert targets.tolist() == [
        [1, 2, 3, 4, PAD],  # the longest entry: its end-of-text only
        [6, PAD, IGN, IGN, IGN],  # the first end-of-text is kept, the padding after it ignored
        [8, 9, PAD, IGN, IGN],
    ]
    assert inputs.dtype == targets.dtype == torch.long


def test_collate_every_row_keeps_exactly_one_end_of_text():
    batch = [[1] * n for n in (1, 4, 9, 2)]
    inputs, targets = custom_collate_fn(batch)
    assert inputs.shape == targets.shape == (4, 9)
    for row, ids in zip(targets.tolist(), batch, strict=True):
        assert row.count(PAD) == 1 and row.index(PAD) == len(ids) - 1
        assert row[len(ids) :] == [IGN] * (9 - len(ids))


def test_collate_truncates_inputs_and_targets():
    inputs, targets = custom_collate_fn([[0, 1, 2, 3, 4], [5, 6]], allowed_max_length=3)
    assert inputs.tolist() == [[0, 1, 2], [5, 6, PAD]]
    assert targets.tolist() == [[1, 2, 3], [6, PAD, IGN]]
    inputs, _ = custom_collate_fn([[0, 1]], allowed_max_length=100)  # longer than the batch: no change
    assert inputs.tolist() == [[0, 1]]


@pytest.mark.parametrize("allowed_max_length", [0, -3, 2.5, True, "8"])
def test_collate_refuses_a_bad_allowed_max_length(allowed_max_length):
    with pytest.raises(ValueError, match="allowed_max_length must be a positive number of tokens.*or None"):
        custom_collate_fn([[0, 1, 2]], allowed_max_length=allowed_max_length)


def test_collate_custom_pad_and_ignore_index():
    inputs, targets = custom_collate_fn([[1, 2, 3], [4]], pad_token_id=0, ignore_index=-1)
    assert inputs.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert targets.tolist() == [[2, 3, 0], [0, -1, -1]]


def test_collate_device():
    inputs, targets = custom_collate_fn([[1, 2]], device="meta")
    assert inputs.device.type == targets.device.type == "meta"
    inputs, _ = custom_collate_fn([[1, 2]], device=torch.device("cpu"))
    assert inputs.device.type == "cpu"


def test_collate_refuses_empty_batches_and_entries():
    with pytest.raises(ValueError, match="empty batch"):
        custom_collate_fn([])
    with pytest.raises(ValueError, match="no tokens"):
        custom_collate_fn([[1], []])


def test_collate_masks_the_instruction():
    # (prompt_length, ids): the targets that predict prompt tokens 1..prompt_length-1 are ignored
    inputs, targets = custom_collate_fn([(3, [10, 11, 12, 13, 14]), (2, [20, 21, 22])])
    assert inputs.tolist() == [[10, 11, 12, 13, 14], [20, 21, 22, PAD, PAD]]
    assert targets.tolist() == [[IGN, IGN, 13, 14, PAD], [IGN, 22, PAD, IGN, IGN]]


def test_instruction_masking_on_real_entries(tokenizer):
    dataset = InstructionDataset(ENTRIES, tokenizer, mask_instruction=True)
    _, targets = custom_collate_fn([dataset[0], dataset[1]])
    for row, (prompt_length, ids) in zip(targets.tolist(), [dataset[0], dataset[1]], strict=True):
        counted = [t for t in row if t != IGN]
        assert counted == ids[prompt_length:] + [PAD]  # the answer and one end-of-text, nothing else


def test_the_loss_of_a_padded_batch_counts_each_answer_and_one_end_of_text(tokenizer):
    """Chapter 7 trains with chapter 5's calc_loss_batch on custom_collate_fn's batches: the loss must be
    the mean over every real next token of every entry (its end-of-text included), as if each entry were
    scored alone without padding; the padding after the first end-of-text counts for nothing."""
    model = tiny_model()
    dataset = InstructionDataset(ENTRIES, tokenizer)
    inputs, targets = custom_collate_fn([dataset[0], dataset[1]])
    assert inputs.shape[1] > min(len(dataset[0]), len(dataset[1]))  # one entry is padded
    loss = calc_loss_batch(inputs, targets, model, "cpu")
    per_token = []
    for ids in (dataset[0], dataset[1]):
        alone = torch.tensor([ids])
        log_probs = torch.log_softmax(model(alone)[0], dim=-1)
        next_ids = ids[1:] + [PAD]  # every next token, then one end-of-text
        per_token += [-log_probs[i, t] for i, t in enumerate(next_ids)]
    expected = torch.stack(per_token).mean()
    torch.testing.assert_close(
        loss, expected, msg="the loss must average the real next tokens only, padding left out"
    )


# --- generation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("temperature", "top_k"), [(0.0, None), (1.0, 5), (1.5, None)])
def test_stream_generate_gives_generate_tokens(temperature, top_k):
    model = tiny_model()
    idx = torch.tensor([[1, 2, 3]])
    torch.manual_seed(5)
    streamed = list(stream_generate(model, idx, 12, 64, temperature, top_k))
    torch.manual_seed(5)
    expected = generate(model, idx, 12, 64, temperature, top_k)
    assert streamed == expected[0, 3:].tolist()


def test_stream_generate_stops_at_eos_without_yielding_it():
    model = tiny_model()
    idx = torch.tensor([[1, 2, 3]])
    tokens = list(stream_generate(model, idx, 10, 64))
    eos = tokens[2]  # pretend the third greedy token is end-of-text
    assert list(stream_generate(model, idx, 10, 64, eos_id=eos)) == tokens[: tokens.index(eos)]


def test_stream_generate_slides_past_the_context():
    model = tiny_model(context_length=8)
    idx = torch.tensor([[1, 2, 3]])
    expected = generate(model, idx, 12, 8)
    assert list(stream_generate(model, idx, 12, 8)) == expected[0, 3:].tolist()


def test_stream_generate_refuses_bad_arguments():
    model = tiny_model()
    with pytest.raises(ValueError, match="one row"):
        next(stream_generate(model, torch.zeros(2, 3, dtype=torch.long), 5, 64))
    with pytest.raises(ValueError, match="temperature"):
        next(stream_generate(model, torch.zeros(1, 3, dtype=torch.long), 5, 64, temperature=-1))


def test_stream_response_joins_to_generate_response(tokenizer):
    model = tiny_model()
    pieces = list(stream_response(model, tokenizer, ENTRIES[0], 15))
    assert len(pieces) > 1
    text = "".join(pieces)
    assert text == text.lstrip() and "\ufffd" not in text
    assert generate_response(model, tokenizer, ENTRIES[0], 15) == text.strip()
    prompt = text_to_token_ids(format_input(ENTRIES[0]) + RESPONSE_HEADER, tokenizer)
    ids = generate(model, prompt, 15, 64, eos_id=50256)
    assert text.strip() == tokenizer.decode(ids[0, prompt.shape[1] :].tolist()).strip()


def test_stream_response_never_splits_a_character(monkeypatch):
    class FakeTokenizer:
        """Token i is byte i; 'é' is the two bytes C3 A9, so after the first one the text is incomplete."""

        def encode(self, text, allowed_special=()):
            return list(text.encode("utf-8"))

        def decode(self, ids):
            return bytes(ids).decode("utf-8", errors="replace")

    script = iter([ord(" "), ord("a"), 0xC3, 0xA9, ord("b")])
    # the sampler of the fast generation loop, which stream_response runs on
    monkeypatch.setattr(
        fast_generation, "sample_next_token", lambda *args: torch.tensor([[next(script, PAD)]])
    )
    pieces = list(stream_response(tiny_model(256), FakeTokenizer(), {"instruction": "x"}, 10))
    assert pieces == ["a", "é", "b"]  # the leading space dropped, é handed out whole


def test_a_prompt_longer_than_the_context_is_refused_naming_the_entry(tokenizer):
    model = tiny_model(context_length=64)
    long_entry = {"instruction": "Summarize.", "input": "word " * 100, "output": "x"}
    with pytest.raises(ValueError, match="no room is left for an answer"):
        generate_response(model, tokenizer, long_entry)
    with pytest.raises(ValueError, match=r"^entry 1: the prompt has \d+ tokens"):
        generate_test_responses(model, tokenizer, [ENTRIES[0], long_entry], 5, progress=False)


def test_generate_test_responses_reports_unfinished_answers(tokenizer, capsys):
    model = tiny_model()
    results = generate_test_responses(model, tokenizer, ENTRIES, max_new_tokens=3, progress=False)
    assert [set(r) for r in results] == [{"instruction", "input", "output", "model_response"}] * 2
    assert results[0]["model_response"] == generate_response(model, tokenizer, ENTRIES[0], 3)
    assert ENTRIES[0].keys() == {"instruction", "input", "output"}  # the input entries are not changed
    out = capsys.readouterr().out
    assert "2 of 2 responses did not end" in out and "entries 0, 1" in out


def test_generate_test_responses_with_eos_reached_reports_nothing(tokenizer, capsys):
    model = tiny_model()
    prompt = text_to_token_ids(format_input(ENTRIES[0]) + RESPONSE_HEADER, tokenizer)
    first = generate(model, prompt, 1, 64)[0, -1].item()
    results = generate_test_responses(model, tokenizer, ENTRIES[:1], 5, eos_id=first, progress=False)
    assert results[0]["model_response"] == ""
    assert capsys.readouterr().out == ""


def test_generate_test_responses_turns_dropout_off_and_restores_the_mode(tokenizer):
    model = tiny_model(drop_rate=0.5).train()
    torch.manual_seed(0)
    results = generate_test_responses(model, tokenizer, ENTRIES, max_new_tokens=6, progress=False)
    assert model.training, "generate_test_responses must give the model back in training mode"
    model.eval()
    expected = [generate_response(model, tokenizer, entry, 6) for entry in ENTRIES]
    assert [r["model_response"] for r in results] == expected, (
        "generate_test_responses must answer with dropout off (the eval-mode answers)"
    )


def test_save_responses_is_atomic_json(tmp_path):
    path = save_responses([{**ENTRIES[0], "model_response": "Bleu ☺"}], tmp_path / "out.json")
    assert json.loads(path.read_text(encoding="utf-8"))[0]["model_response"] == "Bleu ☺"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    with pytest.raises(TypeError):
        save_responses([{"x": object()}], path)  # not JSON: the old file stays as it was
    assert json.loads(path.read_text(encoding="utf-8"))[0]["model_response"] == "Bleu ☺"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


# --- offline scores --------------------------------------------------------------------------------------


def test_rouge_l_on_known_pairs():
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == 1.0
    assert rouge_l("the cat sat", "a dog ran") == 0.0
    # LCS "the cat the mat" = 4 of 6 reference words and 4 of 5 candidate words
    assert rouge_l("the cat sat on the mat", "the cat ate the mat") == pytest.approx(
        2 * (4 / 5) * (4 / 6) / (4 / 5 + 4 / 6)
    )
    assert rouge_l("a b c d", "d c b a") == pytest.approx(0.25)  # order matters: LCS is one word
    assert rouge_l("The Cat.", "the cat") == 1.0  # case and punctuation ignored
    assert rouge_l("", "") == 1.0 and rouge_l("x", "") == 0.0 and rouge_l("", "x") == 0.0


def test_token_f1_on_known_pairs():
    assert token_f1("a b c d", "d c b a") == 1.0  # order ignored
    assert token_f1("a a b", "a b b") == pytest.approx(2 / 3)  # shared: one a, one b
    assert token_f1("the cat", "a dog") == 0.0
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0


def test_offline_scores_average_in_percent():
    data = [
        {"output": "the cat sat", "model_response": "the cat sat"},
        {"output": "the cat sat", "model_response": "a dog ran"},
    ]
    assert offline_scores(data, "model_response") == {"rouge_l": 50.0, "token_f1": 50.0}
    with pytest.raises(ValueError, match="at least one entry"):
        offline_scores([], "model_response")
