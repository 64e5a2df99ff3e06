"""load_hf_model, proven against transformers' LlamaForCausalLM, Qwen3ForCausalLM and Qwen3MoeForCausalLM.

Each reference model is built with a small random configuration (grouped-query attention with fewer
key/value heads than heads, Llama 3's RoPE scaling with a short original context, experts with top-k > 1),
saved with ``save_pretrained`` (once also in shards with an index) and loaded with ``load_hf_model``; the
logits must agree in float32 within 1e-4 for a batch of two 48-token texts, with the KV cache off and on.
Hub repository names go through a hub cache laid out in a temporary folder (``HF_HUB_CACHE`` with
``HF_HUB_OFFLINE``), the mirror, and the offline error. The tokenizers are trained here (no downloads).
"""

import json
import os
import shutil

import pytest
import torch

from ch04_gpt.gpt import KVCache, generate_text_cached
from ch05_pretraining.pretraining import generate, text_to_token_ids, token_ids_to_text
from llama_qwen.hf_models import (
    CHAT_FORMATS,
    ChatTokenizer,
    format_chat,
    hf_config_to_ours,
    load_hf_model,
    load_hf_tokenizer,
    read_hf_config,
)
from llama_qwen.llama3 import Llama3Model
from llama_qwen.qwen3 import MoEFeedForward, Qwen3Model
from shared.data import sha256_of

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py

transformers = pytest.importorskip("transformers")  # listed in requirements: never skipped in CI

NUM_TOKENS = 48  # past the scaled RoPE's original context of 16, and two prefill chunks for the cache
COMMON = {
    "vocab_size": 256,
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128,
}
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}


def _llama():
    config = transformers.LlamaConfig(
        **COMMON, rms_norm_eps=1e-5, rope_theta=500_000.0, rope_scaling=LLAMA3_ROPE, tie_word_embeddings=True
    )
    return transformers.LlamaForCausalLM(config)


def _qwen3():
    config = transformers.Qwen3Config(**COMMON, head_dim=16, tie_word_embeddings=False)
    return transformers.Qwen3ForCausalLM(config)


def _qwen3_moe():
    config = transformers.Qwen3MoeConfig(
        **COMMON,
        head_dim=16,
        moe_intermediate_size=32,
        num_experts=6,
        num_experts_per_tok=2,
        norm_topk_prob=True,
        decoder_sparse_step=1,
    )
    model = transformers.Qwen3MoeForCausalLM(config)
    with torch.no_grad():  # a decisive router, as after training: a misrouted token would show
        for layer in model.model.layers:
            layer.mlp.gate.weight.normal_(std=0.5)
    return model


REFERENCES = {"llama": _llama, "qwen3": _qwen3, "qwen3_moe": _qwen3_moe}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """{name: (transformers model, folder)}, each saved with save_pretrained; llama also in shards."""
    transformers.utils.logging.disable_progress_bar()
    root = tmp_path_factory.mktemp("hf-models")
    models = {}
    for seed, (name, build) in enumerate(REFERENCES.items()):
        torch.manual_seed(seed)
        hf = build().eval()
        hf.save_pretrained(root / name)
        models[name] = (hf, root / name)
    hf = models["llama"][0]
    hf.save_pretrained(root / "llama-sharded", max_shard_size="40KB")
    models["llama-sharded"] = (hf, root / "llama-sharded")
    return models


def _logit_differences(ours, hf):
    """Max abs differences of our logits (no cache; cache filled in chunks) from transformers'."""
    ids = torch.randint(0, COMMON["vocab_size"], (2, NUM_TOKENS), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = hf(ids).logits
        full = ours(ids)
        cache = KVCache(len(ours.trf_blocks))
        chunks = [ours(ids[:, :20], kv_cache=cache), ours(ids[:, 20:40], kv_cache=cache)]
        chunks += [ours(ids[:, i : i + 1], kv_cache=cache) for i in range(40, NUM_TOKENS)]
        cached = torch.cat(chunks, dim=1)
    return (full - expected).abs().max().item(), (cached - expected).abs().max().item()


@pytest.mark.parametrize("name", ["llama", "llama-sharded", "qwen3", "qwen3_moe"])
def test_same_logits_as_transformers_with_and_without_the_kv_cache(saved, name):
    hf, folder = saved[name]
    ours = load_hf_model(folder)
    expected_class = Llama3Model if name.startswith("llama") else Qwen3Model
    assert type(ours) is expected_class and not ours.training
    no_cache, with_cache = _logit_differences(ours, hf)
    print(
        f"{name}: max abs logit difference vs transformers {no_cache:.1e}, with the KV cache {with_cache:.1e}"
    )
    assert no_cache < 1e-4 and with_cache < 1e-4


def test_the_configurations_are_read_as_published(saved):
    llama = hf_config_to_ours(read_hf_config(saved["llama"][1]))
    assert llama["rope_freq"] == {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_context_length": 16,
    }
    assert llama["rope_base"] == 500_000.0 and llama["norm_eps"] == 1e-5 and llama["tie_word_embeddings"]
    assert llama["n_kv_groups"] == 2 and llama["head_dim"] == 8 and not llama["qk_norm"]
    moe = load_hf_model(saved["qwen3_moe"][1])
    assert moe.cfg["qk_norm"] and moe.cfg["head_dim"] == 16 and moe.cfg["num_experts_per_tok"] == 2
    assert all(
        isinstance(block.ff, MoEFeedForward) and len(block.ff.experts) == 6 for block in moe.trf_blocks
    )
    assert moe.out_head.weight is not moe.tok_emb.weight  # untied, as the config says
    tied = load_hf_model(saved["llama"][1])
    assert tied.out_head.weight is tied.tok_emb.weight
    index = json.loads((saved["llama-sharded"][1] / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2  # really sharded


def test_bfloat16_files_load_in_the_configs_dtype_or_the_one_asked(tmp_path, saved):
    hf = REFERENCES["qwen3"]().to(torch.bfloat16)
    hf.save_pretrained(tmp_path)
    assert load_hf_model(tmp_path).out_head.weight.dtype == torch.bfloat16
    as_fp32 = load_hf_model(tmp_path, dtype=torch.float32)
    assert as_fp32.out_head.weight.dtype == torch.float32
    assert torch.equal(as_fp32.out_head.weight, hf.lm_head.weight.float())


def test_greedy_generation_matches_transformers(saved):
    hf, folder = saved["qwen3"]
    ours = load_hf_model(folder)
    prompt = torch.tensor([[5, 17, 42, 99]])
    expected = hf.generate(
        prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=10, do_sample=False, pad_token_id=0
    )
    assert torch.equal(generate(ours, prompt, 10, context_size=64), expected)
    assert torch.equal(generate_text_cached(ours, prompt, 10, context_size=64), expected)


def test_a_tied_models_extra_lm_head_is_left_out_as_transformers_does(saved, tmp_path):
    import safetensors.torch

    hf, folder = saved["llama"]  # tied: save_pretrained writes no lm_head.weight
    copy = shutil.copytree(folder, tmp_path / "with-head")
    tensors = safetensors.torch.load_file(copy / "model.safetensors")
    assert "lm_head.weight" not in tensors
    tensors["lm_head.weight"] = torch.zeros_like(tensors["model.embed_tokens.weight"])
    safetensors.torch.save_file(tensors, copy / "model.safetensors", metadata={"format": "pt"})
    ours = load_hf_model(copy)
    assert ours.out_head.weight is ours.tok_emb.weight and max(_logit_differences(ours, hf)) < 1e-4


# --- mistakes, each refused before anything is copied ------------------------------------------------------


def _copy(folder, tmp_path):
    return shutil.copytree(folder, tmp_path / "copy")


def test_a_config_that_does_not_fit_the_weights_names_the_file_and_tensor(saved, tmp_path):
    folder = _copy(saved["qwen3"][1], tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "intermediate_size": 128}))
    shapes = (
        r"(of shape \(96, 64\), the model's is \(128, 64\)|of shape \(64, 96\), the model's is \(64, 128\))"
    )
    with pytest.raises(
        ValueError,
        match=rf"model.safetensors holds model.layers.0.mlp.\w+_proj.weight {shapes} "
        r"\(and 5 more problems\); keep the config.json that was saved",
    ):
        load_hf_model(folder)


def test_missing_and_damaged_files_are_clear_errors(saved, tmp_path):
    folder = _copy(saved["llama-sharded"][1], tmp_path)
    shard = sorted(folder.glob("model-*.safetensors"))[1]
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(ValueError, match="not a complete safetensors file"):
        load_hf_model(folder)
    shard.unlink()
    with pytest.raises(FileNotFoundError, match=f"has no {shard.name}: give the folder that save_pretrained"):
        load_hf_model(folder)
    with pytest.raises(FileNotFoundError, match="neither a folder nor a hub repository name"):
        load_hf_model(tmp_path / "no-such-folder")


def test_unsupported_settings_are_refused_by_name(saved):
    config = read_hf_config(saved["qwen3"][1])
    with pytest.raises(ValueError, match="'gpt2'; load_hf_model builds 'llama', 'qwen3', 'qwen3_moe'"):
        hf_config_to_ours({**config, "model_type": "gpt2"})
    with pytest.raises(ValueError, match="sets attention_bias=True"):
        hf_config_to_ours({**config, "attention_bias": True})
    with pytest.raises(ValueError, match="RoPE of type 'yarn'"):
        hf_config_to_ours(
            {**config, "rope_parameters": {"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0}}
        )
    old_style = {k: v for k, v in config.items() if k not in ("model_type", "rope_parameters")}
    old_style |= {"rope_theta": 1e6, "rope_scaling": None}  # transformers 4's keys, the class name only
    assert hf_config_to_ours(old_style)["rope_base"] == 1e6 and hf_config_to_ours(old_style)["qk_norm"]


# --- hub repository names: cache, mirror, offline -----------------------------------------------------------

REVISION = "0123456789abcdef0123456789abcdef01234567"


def _hub_cache(cache, repo_id, folder):
    """Lay ``folder``'s files out as huggingface_hub caches a downloaded repository: blobs named by their
    sha256, relative links to them under snapshots/<revision>/, refs/main naming the revision."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for file in folder.iterdir():
        blob = repo / "blobs" / sha256_of(file)
        shutil.copyfile(file, blob)
        os.symlink(os.path.relpath(blob, snapshot), snapshot / file.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An offline huggingface_hub whose cache is an empty folder; no mirror."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.delenv("LLMFS_DATA_MIRROR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    return cache


def test_a_hub_name_loads_from_the_cache_offline(saved, offline_hub, tmp_path):
    hf, folder = saved["llama-sharded"]
    with_tokenizer = shutil.copytree(folder, tmp_path / "with-tokenizer")
    _train_tokenizer("llama3").save(str(with_tokenizer / "tokenizer.json"))
    _hub_cache(offline_hub, "meta-llama/Tiny-Llama-Test", with_tokenizer)
    ours = load_hf_model("meta-llama/Tiny-Llama-Test")
    assert max(_logit_differences(ours, hf)) < 1e-4
    assert load_hf_tokenizer("meta-llama/Tiny-Llama-Test").chat_format == "llama3"


def test_a_hub_name_loads_from_the_mirror(saved, offline_hub, tmp_path, monkeypatch):
    hf, folder = saved["qwen3_moe"]
    shutil.copytree(folder, tmp_path / "mirror" / "Qwen--Tiny-MoE-Test")
    monkeypatch.setenv("LLMFS_DATA_MIRROR", str(tmp_path / "mirror"))
    assert max(_logit_differences(load_hf_model("Qwen/Tiny-MoE-Test"), hf)) < 1e-4


def test_offline_without_a_copy_says_what_to_download_and_where(offline_hub):
    with pytest.raises(FileNotFoundError) as err:
        load_hf_model("Qwen/Qwen3-0.6B")
    message = str(err.value)
    print(message)
    assert "\n" not in message and "could not get config.json of Qwen/Qwen3-0.6B" in message
    assert (
        "https://huggingface.co/Qwen/Qwen3-0.6B" in message
        and "Qwen--Qwen3-0.6B of $LLMFS_DATA_MIRROR" in message
    )


# --- tokenizers, trained here ---------------------------------------------------------------------------


def _train_tokenizer(chat_format, vocab_size=400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        show_progress=False,
        special_tokens=list(CHAT_FORMATS[chat_format]["special_tokens"]),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    text = "Every effort moves you. The verdict was a surprise to everyone who knew him. " * 20
    tokenizer.train_from_iterator([text], trainer)
    if chat_format == "qwen3":
        tokenizer.add_tokens(["<think>", "</think>"])  # ordinary added tokens, as in Qwen3's file
    return tokenizer


MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": " Who won? "},
    {"role": "assistant", "content": "Nobody."},
    {"role": "user", "content": "Why?"},
]
# Meta-Llama-3-8B-Instruct's chat template (tokenizer_config.json), rendered by transformers as the reference
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def test_llama3_chat_prompt_is_what_its_template_renders(tmp_path):
    _train_tokenizer("llama3").save(str(tmp_path / "tokenizer.json"))
    reference = transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(tmp_path / "tokenizer.json"), bos_token="<|begin_of_text|>"
    )
    reference.chat_template = LLAMA3_TEMPLATE
    ours = ChatTokenizer(tmp_path / "tokenizer.json")
    for generation_prompt in (True, False):
        expected = reference.apply_chat_template(
            MESSAGES, tokenize=False, add_generation_prompt=generation_prompt
        )
        assert ours.format_chat(MESSAGES, add_generation_prompt=generation_prompt) == expected
    assert ours.encode_chat(MESSAGES)[0] == ours.special_tokens["<|begin_of_text|>"]
    assert ours.stop_ids == [ours.special_tokens["<|eot_id|>"], ours.special_tokens["<|end_of_text|>"]]


def test_qwen3_chat_prompt_and_special_tokens(tmp_path):
    _train_tokenizer("qwen3").save(str(tmp_path / "tokenizer.json"))
    ours = ChatTokenizer(tmp_path / "tokenizer.json")
    assert ours.chat_format == "qwen3"
    expected = (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n Who won? <|im_end|>\n"
        "<|im_start|>assistant\nNobody.<|im_end|>\n<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert ours.format_chat(MESSAGES) == expected
    no_thinking = ours.format_chat(MESSAGES, enable_thinking=False)
    assert no_thinking == expected + "<think>\n\n</think>\n\n"
    answered = MESSAGES + [{"role": "assistant", "content": "\nThe jury."}]  # the template's empty reasoning
    assert ours.format_chat(answered, add_generation_prompt=False) == (
        expected.removesuffix("<|im_start|>assistant\n")
        + "<|im_start|>assistant\n<think>\n\n</think>\n\nThe jury.<|im_end|>\n"
    )
    ids = ours.encode_chat(MESSAGES)
    assert ids.count(ours.special_tokens["<|im_start|>"]) == 5 and ours.decode(ids) == expected
    text = "The verdict, reconsidered: 42 × ünïcödé!"
    assert ours.decode(ours.encode(text)) == text  # byte-level: any text round-trips
    assert token_ids_to_text(text_to_token_ids(text, ours), ours) == text  # chapter 5's helpers take it
    with pytest.raises(ValueError, match="special token '<|im_end|>': pass allowed_special='all'"):
        ours.encode("stop<|im_end|>", allowed_special=set())
    assert (
        ours.encode("stop<|im_end|>", allowed_special={"<|im_end|>"})[-1] == ours.special_tokens["<|im_end|>"]
    )


def test_tokenizer_mistakes_are_clear_errors(tmp_path):
    _train_tokenizer("qwen3").save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ValueError, match=r"lacks the llama3 chat tokens \['<\|begin_of_text\|>'"):
        ChatTokenizer(tmp_path / "tokenizer.json", chat_format="llama3")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not a tokenizer.json"):
        ChatTokenizer(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="message 0 is"):
        format_chat([{"role": "robot", "content": "hi"}], "qwen3")
    with pytest.raises(ValueError, match="chat_format must be one of"):
        format_chat(MESSAGES, "chatml")
