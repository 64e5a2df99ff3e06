"""Chapter 5's checkpoints: safetensors weights, atomic writes, refusing another model, exact resuming."""

import pytest
import torch

from ch04_gpt.gpt import GPTModel
from ch05_pretraining.checkpoints import load_checkpoint, read_checkpoint_config, save_checkpoint
from ch05_pretraining.pretraining import create_train_val_loaders, train_model_simple
from ch05_pretraining.training_extras import train_model
from shared.data import fetch, gpt2_encoding

CFG = {
    "vocab_size": 50257,
    "context_length": 32,
    "emb_dim": 32,
    "n_heads": 2,
    "n_layers": 1,
    "drop_rate": 0.2,  # dropout on: resuming must restore the random generators too
    "qkv_bias": False,
}


@pytest.fixture(scope="module")
def loaders():
    text = fetch("the-verdict.txt").read_text(encoding="utf-8")[:1600]
    return create_train_val_loaders(text, context_length=CFG["context_length"], batch_size=2)


def new_run(seed=123, **cfg):
    torch.manual_seed(seed)
    model = GPTModel({**CFG, **cfg})
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)


def train(loaders, num_epochs=2, **kwargs):
    """Appendix D's train_model with chapter 5's settings (constant learning rate, no clipping), as the
    pretraining command's --book runs it, with checkpoints."""
    model, optimizer = new_run()
    train_loader, val_loader = loaders
    losses = train_model(
        model, train_loader, val_loader, optimizer, "cpu", num_epochs, eval_freq=2, eval_iter=1,
        start_context="Every effort", tokenizer=gpt2_encoding(), warmup_steps=1, initial_lr=1e-3,
        min_lr=1e-3, max_norm=None, progress=False, **kwargs,
    )  # fmt: skip
    return model, losses[:3]


def test_train_model_with_the_books_settings_records_train_model_simple_exactly(loaders):
    model, optimizer = new_run(drop_rate=0.2)  # dropout on: the random draws must match too
    simple = train_model_simple(
        model, *loaders, optimizer, "cpu", 2, eval_freq=2, eval_iter=1, start_context="Every effort",
        tokenizer=gpt2_encoding(), progress=False,
    )  # fmt: skip
    torch.manual_seed(123)
    extras_model = GPTModel({**CFG, "drop_rate": 0.2})
    extras_optimizer = torch.optim.AdamW(extras_model.parameters(), lr=1e-3, weight_decay=0.1)
    extras = train_model(
        extras_model, *loaders, extras_optimizer, "cpu", 2, eval_freq=2, eval_iter=1,
        start_context="Every effort", tokenizer=gpt2_encoding(), warmup_steps=1, initial_lr=1e-3,
        min_lr=1e-3, max_norm=None, progress=False,
    )  # fmt: skip
    assert extras[:3] == simple, "the book's settings must reproduce train_model_simple's losses exactly"
    assert set(extras[3]) == {1e-3}, "a constant learning rate"
    assert torch.equal(extras_model.out_head.weight, model.out_head.weight)


def test_save_and_load_round_trip(tmp_path):
    model, optimizer = new_run()
    model(torch.zeros(1, 4, dtype=torch.long)).sum().backward()
    optimizer.step()
    folder = save_checkpoint(tmp_path, model, optimizer, {"step": 0, "epoch": 0})
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "training_state.pt"]
    assert (tmp_path / "latest").read_text() == folder.name == "step-000001"
    assert read_checkpoint_config(tmp_path) == model.cfg

    restored, restored_optimizer = new_run(seed=9)
    state = load_checkpoint(tmp_path, restored, restored_optimizer)
    assert state["step"] == 0 and state["epoch"] == 0
    for key, value in model.state_dict().items():
        assert torch.equal(value, restored.state_dict()[key]), key
    saved, loaded = optimizer.state_dict()["state"], restored_optimizer.state_dict()["state"]
    assert all(torch.equal(saved[i]["exp_avg"], loaded[i]["exp_avg"]) for i in saved)


def test_weights_only_checkpoints_and_tied_weights(tmp_path):
    model, _ = new_run(tie_weights=True)
    save_checkpoint(tmp_path, model)
    restored, _ = new_run(seed=5, tie_weights=True)
    assert load_checkpoint(tmp_path, restored) == {}
    assert restored.out_head.weight is restored.tok_emb.weight  # still one shared matrix
    assert torch.equal(restored.tok_emb.weight, model.tok_emb.weight)
    with pytest.raises(FileNotFoundError, match="no optimizer state"):
        load_checkpoint(tmp_path, restored, torch.optim.SGD(restored.parameters(), lr=0.1))


def test_a_checkpoint_of_another_configuration_is_refused_naming_both(tmp_path):
    model, _ = new_run()
    save_checkpoint(tmp_path, model)
    other, _ = new_run(emb_dim=64)
    with pytest.raises(ValueError, match=r"another shape, with emb_dim 32 \(this model: 64\): build"):
        load_checkpoint(tmp_path, other)
    different_dropout, _ = new_run(drop_rate=0.0)  # not part of the architecture
    load_checkpoint(tmp_path, different_dropout)


def test_only_the_newest_checkpoints_are_kept_and_latest_names_a_complete_one(tmp_path):
    model, optimizer = new_run()
    for step in range(4):
        save_checkpoint(tmp_path, model, optimizer, {"step": step}, keep_last=2)
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-000003", "step-000004"]
    assert (tmp_path / "latest").read_text() == "step-000004"
    assert not list(tmp_path.rglob("*.tmp"))  # no temporary files left behind


def test_an_interrupted_save_leaves_the_previous_checkpoint_usable(tmp_path, monkeypatch):
    model, optimizer = new_run()
    save_checkpoint(tmp_path, model, optimizer, {"step": 4})

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # e.g. Ctrl-C while the optimizer state is written

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, model, optimizer, {"step": 9})
    monkeypatch.undo()
    assert (tmp_path / "latest").read_text() == "step-000005"
    assert load_checkpoint(tmp_path, new_run()[0], new_run()[1])["step"] == 4
    assert not list(tmp_path.rglob("*.tmp"))


def test_no_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        read_checkpoint_config(tmp_path)


def test_a_damaged_weights_file_is_a_clear_error(tmp_path):
    model, _ = new_run()
    folder = save_checkpoint(tmp_path, model)
    (folder / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match="not a complete safetensors file"):
        load_checkpoint(tmp_path, model)


@pytest.mark.parametrize("where", ["first epoch", "second epoch", "end of an epoch"])
def test_resuming_gives_exactly_the_losses_of_an_uninterrupted_run(loaders, tmp_path, where):
    steps_per_epoch = len(loaders[0])
    stop_after = {"first epoch": 3, "second epoch": steps_per_epoch + 2, "end of an epoch": steps_per_epoch}[
        where
    ]
    full_model, full = train(loaders)
    _, partial = train(loaders, checkpoint_dir=tmp_path, max_steps=stop_after)
    assert len(partial[0]) < len(full[0])
    resumed_model, resumed = train(loaders, checkpoint_dir=tmp_path, resume=True)
    assert resumed == full  # train losses, validation losses, tokens seen: all exactly equal
    for key, value in full_model.state_dict().items():
        assert torch.equal(value, resumed_model.state_dict()[key]), key


def test_resuming_a_finished_run_trains_no_further(loaders, tmp_path):
    model, losses = train(loaders, num_epochs=1, checkpoint_dir=tmp_path)
    again_model, again = train(loaders, num_epochs=1, checkpoint_dir=tmp_path, resume=True)
    assert again == losses
    assert torch.equal(again_model.out_head.weight, model.out_head.weight)


def test_bad_training_arguments(loaders):
    model, optimizer = new_run()
    train_loader, val_loader = loaders
    args = (model, train_loader, val_loader, optimizer, "cpu")
    with pytest.raises(ValueError, match="eval_freq must be a positive integer"):
        train_model_simple(*args, 1, 0, 1, "x", gpt2_encoding())
    with pytest.raises(ValueError, match="resume=True needs the checkpoint_dir"):
        train_model(*args, 1, 1, 1, "x", gpt2_encoding(), warmup_steps=1, resume=True)


def test_a_damaged_training_state_names_the_file_and_the_previous_checkpoint(tmp_path):
    model, optimizer = new_run()
    save_checkpoint(tmp_path, model, optimizer, {"step": 4})
    newest = save_checkpoint(tmp_path, model, optimizer, {"step": 9})
    (newest / "training_state.pt").write_bytes(b"cut short")
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path, model, optimizer)
    message = str(err.value)
    assert str((newest / "training_state.pt").resolve()) in message, "the damaged file, by its full path"
    assert str((tmp_path / "step-000005").resolve()) in message, "the previous complete checkpoint"


def test_a_missing_checkpoint_is_named_by_its_full_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no checkpoint in {tmp_path.resolve() / 'none'}"):
        read_checkpoint_config(tmp_path / "none")
