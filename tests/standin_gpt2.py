"""Stand-in GPT-2 weights for offline tests: random values in OpenAI's real format and hub layout.

OpenAI's weights cannot be downloaded here. ``write_standin_hub_cache`` writes, for each GPT-2 size asked
for, what ``huggingface_hub`` leaves on disk after downloading ``openai-community/gpt2*``'s
``model.safetensors``: ``transformers``' ``GPT2LMHeadModel`` with that size's configuration and random
weights, saved with ``save_pretrained`` (safetensors), stored as the hub stores it:

    <cache>/models--openai-community--gpt2-medium/
        blobs/<sha256 of the file>                    the file itself
        snapshots/<revision>/model.safetensors         a relative link to the blob
        refs/main                                      the revision's name

With ``HF_HUB_CACHE`` pointing at ``<cache>``, the course's ``download_gpt2_weights`` finds the file on its
ordinary path (``try_to_load_from_cache``): no switch in the course's code, no mock, no network.
"""

import os
import shutil
import tempfile
from pathlib import Path

import torch

from ch04_gpt.gpt import get_gpt_config, gpt_config_key
from ch05_pretraining.pretraining import GPT2_HUB_REPOS
from shared.data import sha256_of

# Any 40-hex-digit name works; a fixed one keeps the layout the same from run to run.
STANDIN_REVISION = "0123456789abcdef0123456789abcdef01234567"


def standin_gpt2_config(name):
    """``transformers.GPT2Config`` of GPT-2 size ``name``, from the course's own table of sizes."""
    import transformers

    cfg = get_gpt_config(name)
    return transformers.GPT2Config(
        vocab_size=cfg["vocab_size"],
        n_positions=cfg["context_length"],
        n_embd=cfg["emb_dim"],
        n_layer=cfg["n_layers"],
        n_head=cfg["n_heads"],
    )


def write_standin_weights(name, cache_dir, seed=0):
    """Write size ``name``'s stand-in ``model.safetensors`` into the hub cache ``cache_dir``; returns the
    snapshot path, the one ``huggingface_hub`` returns for a real download. An existing one is kept."""
    import transformers

    repo_id = GPT2_HUB_REPOS[gpt_config_key(name)]
    repo = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / STANDIN_REVISION / "model.safetensors"
    if snapshot.is_file():
        return snapshot
    transformers.utils.logging.disable_progress_bar()  # its "Writing model shards" bar, on stderr
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(standin_gpt2_config(name))
    with tempfile.TemporaryDirectory(dir=cache_dir) as saved:
        model.save_pretrained(saved)  # safetensors, the format the hub serves
        del model
        blob = repo / "blobs" / sha256_of(Path(saved) / "model.safetensors")
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(Path(saved) / "model.safetensors", blob)
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(blob, snapshot.parent), snapshot)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(STANDIN_REVISION)
    return snapshot


def write_standin_hub_cache(cache_dir, names):
    """Stand-in weights for every size in ``names``, in the hub cache ``cache_dir``; returns ``cache_dir``."""
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    for name in names:
        write_standin_weights(name, cache_dir)
    return Path(cache_dir)


def write_standin_alpaca(path):
    """A stand-in for Alpaca's ``alpaca_data.json`` (52,002 entries of instruction, input and output): the
    course's own 1,100 instruction entries, four times over, in the same format. Returns ``path``."""
    import json

    from shared.data import fetch

    entries = json.loads(fetch("instruction-data.json").read_text(encoding="utf-8"))
    Path(path).write_text(json.dumps(entries * 4), encoding="utf-8")
    return Path(path)
