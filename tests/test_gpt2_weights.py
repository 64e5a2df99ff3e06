"""Chapter 5's GPT-2 weight loader, proven against Hugging Face transformers' own GPT2LMHeadModel.

Each test writes a GPT-2 checkpoint with random weights, in the real file format (``save_pretrained``,
safetensors), loads it with ``load_weights_into_gpt`` and compares logits and greedy continuations. The
real weights are never downloaded here; the download path is tested offline.
"""

import pytest
import safetensors.torch
import torch

from ch04_gpt.gpt import GPTModel, get_gpt_config
from ch05_pretraining import pretraining
from ch05_pretraining.pretraining import (
    download_gpt2_weights,
    generate,
    gpt2_mirror_name,
    gpt_to_gpt2_state_dict,
    load_gpt2_state_dict,
    load_pretrained_gpt2,
    load_weights_into_gpt,
)

transformers = pytest.importorskip("transformers")  # listed in requirements.txt: never skipped in CI

SMALL = {"n_embd": 64, "n_layer": 3, "n_head": 4, "n_positions": 128, "vocab_size": 50257}


def hf_checkpoint(tmp_path, seed=0, **config):
    """A GPT2LMHeadModel with random weights, saved with save_pretrained; returns (model, file)."""
    torch.manual_seed(seed)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config)).eval()
    hf.save_pretrained(tmp_path)
    return hf, tmp_path / "model.safetensors"


def our_config(config):
    return {
        "vocab_size": config["vocab_size"],
        "context_length": config["n_positions"],
        "emb_dim": config["n_embd"],
        "n_heads": config["n_head"],
        "n_layers": config["n_layer"],
        "drop_rate": 0.0,
        "qkv_bias": True,
    }


def assert_same_model(ours, hf, num_tokens=24, label=""):
    ids = torch.randint(0, 50257, (2, num_tokens), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        diff = (ours(ids) - hf(ids).logits).abs().max().item()
    print(f"{label} max abs logit difference vs GPT2LMHeadModel: {diff:.2e}")
    assert diff < 1e-4
    prompt = ids[:1, :5]
    expected = hf.generate(
        prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12, do_sample=False, pad_token_id=50256
    )
    assert torch.equal(generate(ours, prompt, 12, ours.cfg["context_length"]), expected)


def test_same_logits_and_greedy_text_as_transformers_small(tmp_path):
    hf, file = hf_checkpoint(tmp_path, **SMALL)
    state_dict = load_gpt2_state_dict(file)
    assert all(key.startswith("transformer.") for key in state_dict)  # save_pretrained's prefix
    ours = load_weights_into_gpt(GPTModel(our_config(SMALL)), state_dict).eval()
    assert_same_model(ours, hf, label="small")


def test_same_logits_as_transformers_with_the_full_124M_shapes(tmp_path):
    hf, file = hf_checkpoint(tmp_path, seed=1)  # GPT2Config() defaults are GPT-2 124M
    ours = GPTModel(get_gpt_config("124M", qkv_bias=True, drop_rate=0.0))
    load_weights_into_gpt(ours, load_gpt2_state_dict(file))
    assert_same_model(ours.eval(), hf, num_tokens=40, label="124M")


def test_keys_without_the_transformer_prefix_as_on_the_hub(tmp_path):
    hf, file = hf_checkpoint(tmp_path, **SMALL)
    hub_style = {k.removeprefix("transformer."): v for k, v in load_gpt2_state_dict(file).items()}
    n_ctx = SMALL["n_positions"]
    for i in range(SMALL["n_layer"]):  # the hub's files still carry the old causal-mask buffers
        hub_style[f"h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, n_ctx, n_ctx))
    ours = load_weights_into_gpt(GPTModel(our_config(SMALL)), hub_style).eval()
    assert_same_model(ours, hf)


def test_a_separate_output_layer_is_loaded_and_written_back(tmp_path):
    hf, file = hf_checkpoint(tmp_path, **SMALL, tie_word_embeddings=False)
    state_dict = load_gpt2_state_dict(file)
    assert "lm_head.weight" in state_dict
    ours = load_weights_into_gpt(GPTModel(our_config(SMALL)), state_dict).eval()
    assert_same_model(ours, hf)
    again = load_weights_into_gpt(GPTModel(our_config(SMALL)), gpt_to_gpt2_state_dict(ours)).eval()
    assert_same_model(again, hf)


def test_our_gpt2_format_is_what_transformers_reads(tmp_path):
    torch.manual_seed(3)
    ours = GPTModel({**our_config(SMALL), "qkv_bias": False}).eval()  # no biases: written as zeros
    ours.out_head.weight = ours.tok_emb.weight  # GPT-2 ties them
    safetensors.torch.save_file(gpt_to_gpt2_state_dict(ours), tmp_path / "model.safetensors")
    transformers.GPT2Config(**SMALL).save_pretrained(tmp_path)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    assert_same_model(ours, hf)


def test_wrong_shapes_and_missing_keys_are_listed_and_nothing_is_copied(tmp_path):
    _, file = hf_checkpoint(tmp_path, **SMALL)
    state_dict = load_gpt2_state_dict(file)
    model = GPTModel({**our_config(SMALL), "emb_dim": 32, "n_layers": 4})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as err:
        load_weights_into_gpt(model, state_dict)
    message = str(err.value)
    assert "wte.weight gives tok_emb.weight the shape (50257, 64), the model has (50257, 32)" in message
    assert "missing h.3.ln_1.weight" in message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    extra = {**state_dict, "transformer.h.9.mlp.c_fc.weight": torch.zeros(2, 2)}
    with pytest.raises(ValueError, match=r"unexpected h\.9\.mlp\.c_fc\.weight \(2, 2\)"):
        load_weights_into_gpt(GPTModel(our_config(SMALL)), extra)


def test_a_model_without_qkv_biases_is_told_to_add_them(tmp_path):
    _, file = hf_checkpoint(tmp_path, **SMALL)
    with pytest.raises(ValueError, match="qkv_bias=True"):
        load_weights_into_gpt(GPTModel({**our_config(SMALL), "qkv_bias": False}), load_gpt2_state_dict(file))


def test_a_truncated_file_is_a_clear_error(tmp_path):
    _, file = hf_checkpoint(tmp_path, **SMALL)
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a complete safetensors file.*download or save it again"):
        load_gpt2_state_dict(file)


# --- where the weights come from ----------------------------------------------------------------------


def test_the_mirror_is_used_and_the_known_checksum_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMFS_DATA_MIRROR", str(tmp_path))
    fake = tmp_path / gpt2_mirror_name("gpt2-small (124M)")
    assert fake.name == "gpt2-124M.safetensors"
    fake.write_bytes(b"not the real weights")
    with pytest.raises(ValueError, match="not openai-community/gpt2's model.safetensors"):
        download_gpt2_weights("124M")

    # a size without a pinned checksum comes from the mirror as it is (its shapes are checked on loading)
    assert "gpt2-medium (355M)" not in pretraining.GPT2_WEIGHTS_SHA256
    medium = tmp_path / "gpt2-355M.safetensors"
    medium.write_bytes(b"x")
    assert download_gpt2_weights("gpt2-medium") == medium


def test_offline_without_a_copy_says_what_to_download_and_where(tmp_path, monkeypatch):
    monkeypatch.delenv("LLMFS_DATA_MIRROR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError) as err:
        download_gpt2_weights("gpt2-large (774M)")
    message = str(err.value)
    assert "https://huggingface.co/openai-community/gpt2-large/resolve/main/model.safetensors" in message
    assert "gpt2-774M.safetensors" in message and "LLMFS_DATA_MIRROR" in message


def test_unknown_sizes_list_the_known_ones():
    with pytest.raises(ValueError, match="known: .*gpt2-small \\(124M\\)"):
        download_gpt2_weights("gpt2-huge")


def test_load_pretrained_gpt2_builds_the_right_size(tmp_path, monkeypatch):
    hf, file = hf_checkpoint(tmp_path, seed=2)  # 124M shapes
    monkeypatch.setattr(pretraining, "download_gpt2_weights", lambda name: file)
    model = load_pretrained_gpt2("gpt2-small (124M)", drop_rate=0.0)
    assert not model.training and model.cfg["qkv_bias"]
    assert_same_model(model, hf, num_tokens=8)
