"""Tests for ch06_classifier/lora.py (appendix E): LoRA starts as a no-op, trains alone when the model is
frozen, merges into the weights without changing the logits, and counts the book's parameters."""

import pytest
import torch
import torch.nn as nn

from ch04_gpt.gpt import GPTModel, get_gpt_config
from ch06_classifier.classifier import add_classification_head, calc_classification_loss_batch
from ch06_classifier.lora import LinearWithLoRA, LoRALayer, merge_lora, replace_linear_with_lora

TINY = {
    "vocab_size": 100,
    "context_length": 16,
    "emb_dim": 32,
    "n_heads": 4,
    "n_layers": 2,
    "drop_rate": 0.0,
    "qkv_bias": True,
}


def tiny_lora_classifier(seed=0, rank=4, alpha=8):
    torch.manual_seed(seed)
    model = add_classification_head(GPTModel(TINY), num_classes=2)
    for param in model.parameters():
        param.requires_grad = False
    replace_linear_with_lora(model, rank=rank, alpha=alpha)
    return model.eval()


def randomize_b(model, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoRALayer):
                module.B.copy_(torch.randn(module.B.shape, generator=gen) * 0.1)


def ids(seed=2):
    return torch.randint(0, 100, (3, 10), generator=torch.Generator().manual_seed(seed))


def test_lora_layer_shapes_and_zero_start():
    torch.manual_seed(0)
    lora = LoRALayer(6, 5, rank=3, alpha=2)
    assert lora.A.shape == (6, 3) and lora.B.shape == (3, 5)
    assert torch.equal(lora.B, torch.zeros(3, 5)) and lora.A.abs().sum() > 0
    x = torch.randn(4, 7, 6)
    assert torch.equal(lora(x), torch.zeros(4, 7, 5))
    with torch.no_grad():
        lora.B.normal_()
    assert torch.allclose(lora(x), (2 / 3) * x @ lora.A @ lora.B)  # scaled by alpha / rank (the LoRA paper)
    assert torch.allclose(x @ lora.delta_weight().T, lora(x), atol=1e-6)


def test_the_update_is_scaled_by_alpha_over_rank():
    # the same A B with twice the rank and twice alpha: the same update; twice alpha alone: twice the update
    torch.manual_seed(0)
    x = torch.randn(2, 6)
    base = LoRALayer(6, 5, rank=2, alpha=4)
    with torch.no_grad():
        base.B.normal_()
    for rank, alpha, factor in ((2, 4, 2.0), (2, 8, 4.0), (4, 8, 2.0)):
        lora = LoRALayer(6, 5, rank=rank, alpha=alpha)
        assert lora.scaling == factor
        with torch.no_grad():
            lora.A.zero_()
            lora.B.zero_()
            lora.A[:, :2] = base.A
            lora.B[:2] = base.B
        assert torch.allclose(lora(x), factor * x @ base.A @ base.B, atol=1e-6)


def test_with_b_at_zero_the_model_output_is_unchanged():
    torch.manual_seed(0)
    model = add_classification_head(GPTModel(TINY)).eval()
    before = model(ids())
    assert (
        replace_linear_with_lora(model, rank=4, alpha=8) == 2 * (4 + 2) + 1
    )  # per block: q, k, v, out, 2 ff
    assert torch.equal(model(ids()), before)


def test_only_lora_parameters_receive_gradients():
    model = tiny_lora_classifier().train()
    randomize_b(model)  # with B = 0, A's gradient would be zero too
    loss = calc_classification_loss_batch(ids(), torch.tensor([0, 1, 1]), model, "cpu")
    loss.backward()
    for name, param in model.named_parameters():
        is_lora = ".lora.A" in name or ".lora.B" in name
        assert param.requires_grad == is_lora, name
        assert (param.grad is not None and param.grad.abs().sum() > 0) == is_lora, name


def test_merging_gives_the_same_logits():
    model = tiny_lora_classifier()
    randomize_b(model)
    before = model(ids())
    assert merge_lora(model) == 13
    assert not any(isinstance(m, (LinearWithLoRA, LoRALayer)) for m in model.modules())
    assert torch.allclose(model(ids()), before, atol=1e-5)
    assert set(model.state_dict()) == set(add_classification_head(GPTModel(TINY)).state_dict())


def test_the_books_lora_parameter_count_for_gpt2_124m():
    with torch.device("meta"):
        model = add_classification_head(GPTModel(get_gpt_config("124M", qkv_bias=True)))
        for param in model.parameters():
            param.requires_grad = False
        replace_linear_with_lora(model, rank=16, alpha=16)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 2_666_528


def test_lora_follows_the_layers_device_and_dtype():
    layer = nn.Linear(4, 3).to(torch.bfloat16)
    wrapped = LinearWithLoRA(layer, rank=2, alpha=1)
    assert wrapped.lora.A.dtype == wrapped.lora.B.dtype == torch.bfloat16
    assert wrapped(torch.randn(2, 4, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_bad_arguments_are_refused():
    model = tiny_lora_classifier()
    with pytest.raises(ValueError, match="already has LoRA"):
        replace_linear_with_lora(model, rank=4, alpha=8)
    torch.manual_seed(0)
    plain = GPTModel(TINY)
    for rank in (0, 2.5, True):
        with pytest.raises(ValueError, match="rank"):
            replace_linear_with_lora(plain, rank=rank, alpha=8)
    with pytest.raises(ValueError, match="alpha"):
        replace_linear_with_lora(plain, rank=2, alpha=float("nan"))
    assert not any(isinstance(m, LinearWithLoRA) for m in plain.modules())  # nothing changed
    with pytest.raises(TypeError):
        LinearWithLoRA(nn.Conv1d(2, 2, 1), rank=2, alpha=1)
    with pytest.raises(TypeError):
        replace_linear_with_lora(nn.Linear(2, 2), rank=2, alpha=1)
