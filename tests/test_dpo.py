"""Chapter 7's DPO bonus (ch07_instruct/dpo.py): the loss against values worked by hand, the masks, the
frozen reference, and the refusals of bad input."""

import copy
import math

import pytest
import torch

from shared import (
    GPTModel,
    PreferenceDataset,
    compute_dpo_loss,
    compute_dpo_loss_batch,
    compute_logprobs,
    custom_collate_fn_dpo,
    degrade_response,
    make_preference_data,
    train_model_dpo_simple,
)

# Four pairs: the log-probabilities of the policy and of the reference, chosen and rejected.
PI_C = torch.tensor([-1.0, -2.0, -0.5, -3.0])
PI_R = torch.tensor([-3.0, -2.5, -1.0, -2.0])
REF_C = torch.tensor([-1.5, -2.0, -1.0, -2.5])
REF_R = torch.tensor([-2.5, -2.0, -1.0, -2.5])


def _by_hand(beta):
    """The DPO loss and the mean rewards of the four pairs, one pair at a time, in plain Python floats."""
    losses, chosen, rejected = [], [], []
    for pc, pr, rc, rr in zip(PI_C.tolist(), PI_R.tolist(), REF_C.tolist(), REF_R.tolist(), strict=True):
        x = beta * ((pc - rc) - (pr - rr))
        losses.append(-math.log(1.0 / (1.0 + math.exp(-x))))
        chosen.append(beta * (pc - rc))
        rejected.append(beta * (pr - rr))
    return sum(losses) / 4, sum(chosen) / 4, sum(rejected) / 4


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_dpo_loss_and_rewards_equal_the_values_worked_by_hand(beta):
    loss, chosen, rejected = compute_dpo_loss(PI_C, PI_R, REF_C, REF_R, beta=beta)
    expected = _by_hand(beta)
    for got, want in zip((loss, chosen, rejected), expected, strict=True):
        assert got.shape == ()
        assert abs(got.item() - want) < 1e-6, (got.item(), want)


def test_the_first_pair_by_hand_and_policy_equal_to_reference_gives_ln2():
    # pair 1 alone: bracket (-1 + 1.5) - (-3 + 2.5) = 1.0, loss -log sigmoid(0.1) = log(1 + e^-0.1)
    loss, chosen, rejected = compute_dpo_loss(PI_C[:1], PI_R[:1], REF_C[:1], REF_R[:1], beta=0.1)
    assert abs(loss.item() - math.log1p(math.exp(-0.1))) < 1e-6
    assert abs(chosen.item() - 0.05) < 1e-7 and abs(rejected.item() + 0.05) < 1e-7
    loss, chosen, rejected = compute_dpo_loss(PI_C, PI_R, PI_C, PI_R)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-7) and chosen.item() == rejected.item() == 0.0


def test_beta_scales_the_rewards_and_sharpens_the_loss():
    low = compute_dpo_loss(PI_C, PI_R, REF_C, REF_R, beta=0.1)
    high = compute_dpo_loss(PI_C, PI_R, REF_C, REF_R, beta=1.0)
    assert torch.allclose(high[1], 10 * low[1]) and torch.allclose(high[2], 10 * low[2])
    # every pair here has a positive bracket: a larger beta pushes each sigmoid closer to 1
    assert high[0] < low[0] < math.log(2)
    # with the brackets negated (the policy prefers the rejected answers), the opposite
    flipped_low = compute_dpo_loss(PI_R, PI_C, REF_R, REF_C, beta=0.1)[0]
    flipped_high = compute_dpo_loss(PI_R, PI_C, REF_R, REF_C, beta=1.0)[0]
    assert flipped_high > flipped_low > math.log(2)


def test_the_gradient_reaches_the_policy_log_probabilities_only_through_the_bracket():
    pi_c, pi_r = PI_C.clone().requires_grad_(), PI_R.clone().requires_grad_()
    loss, chosen, rejected = compute_dpo_loss(pi_c, pi_r, REF_C, REF_R, beta=0.1)
    loss.backward()
    assert not chosen.requires_grad and not rejected.requires_grad  # rewards are for watching
    assert torch.allclose(pi_c.grad, -pi_r.grad)  # d loss / d pi_c = -d loss / d pi_r
    assert (pi_c.grad < 0).all()  # raising the chosen log-probability lowers the loss


def test_compute_logprobs_by_hand_and_masked_tokens_change_nothing():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 7)
    labels = torch.randint(0, 7, (2, 6))
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 1, 1, 0, 0, 0]], dtype=torch.bool)
    got = compute_logprobs(logits, labels, mask)
    log_probs = torch.log_softmax(logits, dim=-1)
    for row in range(2):
        picked = [log_probs[row, t - 1, labels[row, t]].item() for t in range(1, 6) if mask[row, t]]
        assert abs(got[row].item() - sum(picked) / len(picked)) < 1e-6
    changed_logits, changed_labels = logits.clone(), labels.clone()
    changed_logits[0, 4] += 50.0  # predicts token 5 of row 0, masked
    changed_logits[1, 3:] = -1e4  # predicts tokens 4 and 5 of row 1, masked
    changed_labels[0, 5], changed_labels[1, 4] = (labels[0, 5] + 1) % 7, (labels[1, 4] + 3) % 7
    assert torch.equal(compute_logprobs(changed_logits, changed_labels, mask), got)
    unmasked = compute_logprobs(logits, labels)  # every token but the first
    assert torch.allclose(unmasked, log_probs[:, :-1].gather(-1, labels[:, 1:, None]).squeeze(-1).mean(-1))


def _tiny_model(seed=0, vocab=40):
    torch.manual_seed(seed)
    cfg = {
        "vocab_size": vocab,
        "context_length": 32,
        "emb_dim": 16,
        "n_heads": 2,
        "n_layers": 1,
        "drop_rate": 0.0,
        "qkv_bias": False,
    }
    return GPTModel(cfg)


def _fixed_batch():
    items = [
        {"prompt": [1, 2, 3], "chosen": [1, 2, 3, 10, 11, 12], "rejected": [1, 2, 3, 20, 21]},
        {"prompt": [4, 5], "chosen": [4, 5, 13, 14], "rejected": [4, 5, 22, 23, 24, 25]},
        {"prompt": [6, 7, 8, 9], "chosen": [6, 7, 8, 9, 15], "rejected": [6, 7, 8, 9, 26, 27]},
    ]
    return custom_collate_fn_dpo(items, pad_token_id=0)


def test_collate_pads_both_answers_to_one_length_and_masks_prompt_and_padding():
    batch = _fixed_batch()
    # the longest sequence (6 tokens) + 1 end-of-text
    assert batch["chosen"].shape == batch["rejected"].shape == batch["chosen_mask"].shape == (3, 7)
    assert batch["chosen"][1].tolist() == [4, 5, 13, 14, 0, 0, 0]
    # the answer and its first end-of-text count; the prompt and the padding after it do not
    assert batch["chosen_mask"][1].tolist() == [False] * 2 + [True] * 3 + [False] * 2
    assert batch["rejected_mask"][1].tolist() == [False] * 2 + [True] * 5
    assert batch["rejected_mask"][0].tolist() == [False] * 3 + [True] * 3 + [False]
    unmasked = custom_collate_fn_dpo([_fixed_items()[0]], pad_token_id=0, mask_prompt_tokens=False)
    assert unmasked["chosen_mask"][0].tolist() == [True] * 7
    cut = custom_collate_fn_dpo(_fixed_items(), pad_token_id=0, allowed_max_length=5)
    assert cut["chosen"].shape == cut["rejected_mask"].shape == (3, 5)


def _fixed_items():
    return [
        {"prompt": [1, 2, 3], "chosen": [1, 2, 3, 10, 11, 12], "rejected": [1, 2, 3, 20, 21]},
        {"prompt": [4, 5], "chosen": [4, 5, 13, 14], "rejected": [4, 5, 22, 23, 24, 25]},
        {"prompt": [6, 7, 8, 9], "chosen": [6, 7, 8, 9, 15], "rejected": [6, 7, 8, 9, 26, 27]},
    ]


class _Loader(list):
    """A list of batches with a length, which is all the training loop needs from a DataLoader."""


def test_reference_gets_no_gradients_stays_unchanged_and_a_few_steps_raise_the_margin(one_thread):
    batch = _fixed_batch()
    policy = _tiny_model()
    reference = copy.deepcopy(policy)
    before = {k: v.clone() for k, v in reference.state_dict().items()}
    loss0, c0, r0 = compute_dpo_loss_batch(batch, policy, reference, beta=0.5)
    assert loss0.item() == pytest.approx(math.log(2), abs=1e-6) and (c0 - r0).item() == 0.0
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    loader = _Loader([batch])
    tracking = train_model_dpo_simple(
        policy,
        reference,
        loader,
        loader,
        optimizer,
        num_epochs=8,
        beta=0.5,
        eval_freq=4,
        eval_iter=1,
        progress=False,
    )
    assert all(p.grad is None and not p.requires_grad for p in reference.parameters())
    assert all(torch.equal(before[k], v) for k, v in reference.state_dict().items())
    assert not reference.training
    assert len(tracking["batch_losses"]) == 8 and tracking["steps"] == [0, 4]
    margins = tracking["batch_margins"]
    assert margins[-1] > margins[0] + 0.1 and tracking["batch_losses"][-1] < tracking["batch_losses"][0]
    loss1, c1, r1 = compute_dpo_loss_batch(batch, policy, reference, beta=0.5)
    assert (c1 - r1).item() > 0.1 and loss1.item() < loss0.item()
    assert tracking["train_reward_margins"][-1] > tracking["train_reward_margins"][0]


def _one_line_value_error(call, *words):
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and message
    for word in words:
        assert word in message, message


def test_bad_input_gets_a_one_line_value_error(one_thread):
    _one_line_value_error(lambda: compute_dpo_loss(PI_C, PI_R[:3], REF_C, REF_R), "shape")
    _one_line_value_error(lambda: compute_dpo_loss(PI_C[:, None], PI_R[:, None], REF_C, REF_R), "shape")
    for beta in (0, -0.1, float("nan"), float("inf"), True, "0.1"):
        _one_line_value_error(lambda b=beta: compute_dpo_loss(PI_C, PI_R, REF_C, REF_R, beta=b), "beta")
    _one_line_value_error(lambda: compute_dpo_loss(*[torch.tensor([])] * 4), "empty")
    _one_line_value_error(lambda: custom_collate_fn_dpo([]), "empty")
    empty = {k: torch.zeros(0, 5, dtype=torch.long) for k in ("chosen", "rejected")}
    empty.update({f"{k}_mask": torch.zeros(0, 5, dtype=torch.bool) for k in ("chosen", "rejected")})
    model = _tiny_model()
    _one_line_value_error(lambda: compute_dpo_loss_batch(empty, model, copy.deepcopy(model), 0.1), "empty")
    logits, labels = torch.zeros(2, 4, 5), torch.zeros(2, 4, dtype=torch.long)
    _one_line_value_error(lambda: compute_logprobs(logits, labels[:, :3]), "labels")
    _one_line_value_error(
        lambda: compute_logprobs(logits, labels, torch.ones(2, 3, dtype=torch.bool)), "shape"
    )
    no_answer = torch.tensor([[True, False, False, False], [True, True, False, False]])
    _one_line_value_error(lambda: compute_logprobs(logits, labels, no_answer), "selects no token")
    loader = _Loader([_fixed_batch()])
    optimizer = torch.optim.AdamW(model.parameters())
    _one_line_value_error(
        lambda: train_model_dpo_simple(model, model, loader, loader, optimizer, 1, 0.1, 1, 1, progress=False),
        "copy.deepcopy",
    )
    reference = copy.deepcopy(model)
    both = torch.optim.AdamW(list(model.parameters()) + list(reference.parameters()))
    _one_line_value_error(
        lambda: train_model_dpo_simple(model, reference, loader, loader, both, 1, 0.1, 1, 1, progress=False),
        "optimizer",
    )
    _one_line_value_error(
        lambda: train_model_dpo_simple(
            model, reference, loader, loader, optimizer, 1, 0, 1, 1, progress=False
        ),
        "beta",
    )


def test_preference_data_is_deterministic_and_the_dataset_tokenizes_prompt_and_answers():
    entries = [
        {"instruction": "Name a colour.", "input": "", "output": "Blue."},
        {"instruction": "Spell it.", "input": "Ocassion", "output": "Occasion."},
    ]
    pairs = make_preference_data(entries)
    assert pairs == make_preference_data(entries)
    assert [p["chosen"] for p in pairs] == ["Blue.", "Occasion."]
    assert pairs[0]["rejected"] == degrade_response("Blue.", 0) == "Ugh, obviously blue"
    assert pairs[1]["rejected"] == "Whatever. occasion"
    _one_line_value_error(lambda: make_preference_data([]), "no entries")
    _one_line_value_error(lambda: make_preference_data(entries, lambda text, i: text), "equals")

    class Chars:  # a tokenizer with one token per character
        def encode(self, text, allowed_special=frozenset()):
            return [ord(c) for c in text]

    item = PreferenceDataset(pairs, Chars())[1]
    assert item["chosen"][: len(item["prompt"])] == item["prompt"] == item["rejected"][: len(item["prompt"])]
    assert "".join(map(chr, item["chosen"][len(item["prompt"]) :])) == "Occasion."
    _one_line_value_error(lambda: PreferenceDataset(entries, Chars()), "make_preference_data")
