#!/usr/bin/env bash
# The checks of issues 10 and 11 that need a CUDA GPU, in one run: the tests with CUDA branches, the
# generation bench at batch 1 and 8, and the training bench at batch 16 x 1024 tokens with torch.compile.
# Each part writes its whole log to $LOGS (default gpu-logs/) and prints its end; a failing part does not
# stop the others. Needs LLMFS_DATA_MIRROR (the-verdict.txt, vocab.bpe, encoder.json), torch, transformers,
# tiktoken and pytest; not nbval.
#
#     LLMFS_DATA_MIRROR=/path/to/data bash bench/gpu_checks.sh            # about 6 minutes on an H100
#     PARTS="generate-1 train" bash bench/gpu_checks.sh                 # some parts only
#     PARTS="train-autotune train-graphs" bash bench/gpu_checks.sh   # not by default: other compile modes
#     PARTS="full-mode t4" bash bench/gpu_checks.sh   # not by default: every notebook in full mode, with
#                                                     # random stand-in GPT-2 weights; the mirror must also
#                                                     # hold SMSSpamCollection and instruction-data.json
set -u
cd "$(dirname "$0")/.."
LOGS=${LOGS:-gpu-logs}
PARTS=${PARTS:-"tests generate-1 generate-8 train"}
mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the chapters' packages, without installing them

part() {  # part NAME SECONDS COMMAND...: run unless PARTS leaves it out
    local name=$1 limit=$2
    shift 2
    [[ " $PARTS " == *" $name "* ]] || return 0
    echo "=== $name: $*"
    local start=$SECONDS
    timeout "$limit" "$@" >"$LOGS/$name.log" 2>&1
    echo "=== $name: exit $? after $((SECONDS - start)) s"
    tail -n "${TAIL:-30}" "$LOGS/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, '| transformers', transformers.__version__)"

# -o addopts="": the project's pytest options name nbval, which a GPU box may lack
part tests 300 python3 -m pytest -q -o addopts="" -p no:cacheprovider -rs \
    tests/test_fast_generation.py tests/test_kv_cache.py tests/test_attention.py tests/test_gpt.py \
    tests/test_training_extras.py
part generate-1 240 python3 bench/bench_generate.py --device cuda --reps 3
part generate-8 180 python3 bench/bench_generate.py --device cuda --batch 8 --reps 3 --no-simple
part train 380 python3 bench/bench_train.py --device cuda --batch 16 --context 1024 --rounds 12 --compile \
    --only "book fp32,fast (,fast compiled,hf"
# issue 10's open question: do autotuned matrix products, or steps replayed as CUDA graphs, reach 1.3x
# GPT2LMHeadModel compiled the same way?
part train-autotune 560 python3 bench/bench_train.py --device cuda --batch 16 --context 1024 --rounds 12 \
    --compile --compile-mode max-autotune-no-cudagraphs --only "book fp32,fast compiled,hf compiled"
part train-graphs 380 python3 bench/bench_train.py --device cuda --batch 16 --context 1024 --rounds 12 \
    --compile --compile-mode reduce-overhead --only "book fp32,fast compiled,hf compiled"
# issue 23: every notebook in full mode for real (the book's epochs), wall time and peak GPU memory each;
# then Colab's free T4 imitated by a 15 GB memory cap (the time is this GPU's, not a T4's). Random weights
# fail the checks of what a model learned: --keep-going runs the rest of each notebook anyway.
part full-mode 1800 python3 bench/run_notebooks.py --standin-weights --keep-going --json "$LOGS/full-mode.json"
part t4 1800 python3 bench/run_notebooks.py --standin-weights --keep-going --memory-gb 15 --json "$LOGS/t4.json"
