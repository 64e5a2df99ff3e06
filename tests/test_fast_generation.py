"""Tests for the fast generation path (issue 11): chapter 4's StaticKVCache (preallocated, left padding) and
chapter 5's generate / generate_stream / generate_batch built on it.

The reference is always the book's loop on the same model: generate_text_simple (greedy) or
generate(...) (sampling, end-of-text), itself tested in test_pretraining.py. Models are
tiny, with context 16, so that 40 new tokens run well past the context length. CUDA runs the same tests
when present.
"""

import warnings

import pytest
import torch

from ch04_gpt.gpt import GPTModel, generate_text_simple, get_gpt_config
from ch05_pretraining import fast_generation
from ch05_pretraining.fast_generation import StaticKVCache, generate_batch, generate_fast, generate_stream
from ch05_pretraining.pretraining import generate
from shared.cpu_kernels import bf16_gemv

TINY = get_gpt_config(
    "124M", vocab_size=100, context_length=16, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.1
)
IMPLS = ["explicit", "sdpa"]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def tiny_model(impl="explicit", device="cpu", seed=0, **overrides):
    torch.manual_seed(seed)
    return GPTModel({**TINY, "attn_impl": impl, **overrides}).eval().to(device)


def random_ids(batch=1, num_tokens=5, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, TINY["vocab_size"], (batch, num_tokens), generator=gen)


# --- the cache ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("pieces", [[12], [5, 1, 1, 1], [4, 3, 5], [1] * 12])
def test_static_cache_in_pieces_equals_one_pass(impl, pieces):
    model = tiny_model(impl)
    ids = random_ids(3, sum(pieces))
    cache = StaticKVCache(TINY["n_layers"], max_tokens=16)
    with torch.no_grad():
        full = model(ids)
        outputs, start = [], 0
        for length in pieces:
            outputs.append(model(ids[:, start : start + length], kv_cache=cache))
            start += length
            assert cache.num_tokens == start
    torch.testing.assert_close(torch.cat(outputs, dim=1), full, atol=1e-5, rtol=0)
    assert cache.layers[0].keys.shape == (3, TINY["n_heads"], 16, 8)  # allocated once, at full room
    assert repr(cache) == f"StaticKVCache(2 layers, {sum(pieces)} of 16 tokens)"


@pytest.mark.parametrize("impl", IMPLS)
def test_left_padding_gives_each_row_its_own_logits(impl):
    model = tiny_model(impl)
    rows = [random_ids(1, n, seed=n)[0] for n in (7, 2, 5)]
    width = 7
    pad = [width - len(r) for r in rows]
    padded = torch.stack([torch.cat((torch.full((p,), 3), r)) for p, r in zip(pad, rows, strict=True)])
    cache = StaticKVCache(TINY["n_layers"], max_tokens=10, pad=pad)
    with torch.no_grad():
        first = model(padded, kv_cache=cache)
        step = model(torch.tensor([[4], [5], [6]]), kv_cache=cache)
        for i, (p, row) in enumerate(zip(pad, rows, strict=True)):
            alone = model(torch.cat((row, torch.tensor([4 + i])))[None])
            torch.testing.assert_close(first[i, p:], alone[0, :-1], atol=1e-5, rtol=0)
            torch.testing.assert_close(step[i, 0], alone[0, -1], atol=1e-5, rtol=0)


def test_static_cache_reuses_its_tensors_after_reset():
    model = tiny_model()
    cache = StaticKVCache(TINY["n_layers"], max_tokens=8)
    with torch.no_grad():
        model(random_ids(2, 6), kv_cache=cache)
        keys = cache.layers[0].keys
        cache.reset()
        assert cache.num_tokens == 0
        again = model(random_ids(2, 3), kv_cache=cache)
    assert cache.layers[0].keys is keys
    torch.testing.assert_close(again, model(random_ids(2, 3)), atol=1e-5, rtol=0)


def test_static_cache_errors():
    model = tiny_model()
    cache = StaticKVCache(TINY["n_layers"], max_tokens=4)
    with torch.no_grad():
        model(random_ids(2, 3), kv_cache=cache)
        with pytest.raises(ValueError, match="more than its room of 4 tokens"):
            model(random_ids(2, 2), kv_cache=cache)
        with pytest.raises(ValueError, match="holds 2 sequences but the input has 1"):
            model(random_ids(1, 1), kv_cache=cache)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="max_tokens must be a positive integer"):
            StaticKVCache(2, bad)


# --- generate, generate_stream ----------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    ("batch", "prompt_len", "new_tokens"), [(1, 5, 8), (1, 5, 40), (3, 1, 40), (2, 16, 4)]
)
def test_greedy_equals_generate_text_simple(device, impl, batch, prompt_len, new_tokens):
    model = tiny_model(impl, device)
    ids = random_ids(batch, prompt_len)
    expected = generate_text_simple(model, ids, new_tokens, TINY["context_length"])
    assert torch.equal(generate_fast(model, ids, new_tokens, TINY["context_length"]), expected)
    # a window shorter than the model's context: the cache is refilled from it at every step
    short = generate_text_simple(model, ids, 12, context_size=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a prompt longer than 6 tokens is cropped, with a warning
        assert torch.equal(generate_fast(model, ids, 12, context_size=6), short)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("batch", [1, 2])
def test_sampled_with_a_seed_equals_the_book_loop(device, impl, batch):
    model = tiny_model(impl, device)
    ids = random_ids(batch, 4)
    results = []
    for use_cache in (False, True):
        torch.manual_seed(7)
        results.append(
            (generate_fast if use_cache else generate)(model, ids, 40, 16, temperature=1.3, top_k=7)
        )
    assert torch.equal(*results)


def eos_of(model, ids, seed=3):
    """A token that sampling produces a few steps in (so that the end-of-text rule is exercised)."""
    torch.manual_seed(seed)
    return generate(model, ids, 10, 16, temperature=1.5)[0, ids.shape[1] + 4].item()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("batch", [1, 3])
def test_end_of_text_equals_the_book_loop(impl, batch):
    model = tiny_model(impl)
    ids = random_ids(batch, 3)
    eos_id = eos_of(model, ids)
    results = []
    for use_cache in (False, True):
        torch.manual_seed(3)
        results.append(
            (generate_fast if use_cache else generate)(model, ids, 30, 16, temperature=1.5, eos_id=eos_id)
        )
    assert torch.equal(*results)
    # the rule did apply: one row stops before its end-of-text; in a batch, finished rows are filled with it
    assert results[0].shape[1] < 3 + 30 if batch == 1 else (results[0][:, 3:] == eos_id).any()


@pytest.mark.parametrize("eos", [False, True])
def test_stream_yields_generates_tokens(eos):
    model = tiny_model("sdpa")
    ids = random_ids(2, 4)
    eos_id = eos_of(model, ids) if eos else None
    torch.manual_seed(3)
    expected = generate_fast(model, ids, 30, 16, temperature=1.5, eos_id=eos_id)
    torch.manual_seed(3)
    steps = list(generate_stream(model, ids, 30, 16, temperature=1.5, eos_id=eos_id))
    assert all(step.shape == (2, 1) for step in steps)
    assert torch.equal(torch.cat([ids, *steps], dim=1), expected)


def test_stream_checks_its_arguments_at_once():
    model = tiny_model()
    with pytest.raises(ValueError, match="temperature"):
        generate_stream(model, random_ids(), 5, 16, temperature=-1)  # before the first token is asked for


# --- generate_batch ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("new_tokens", [6, 30])
def test_batch_of_ragged_prompts_equals_each_alone(device, impl, new_tokens):
    model = tiny_model(impl, device)
    prompts = [random_ids(1, n, seed=n)[0].tolist() for n in (1, 5, 12, 3)]
    results = generate_batch(model, prompts, new_tokens, TINY["context_length"])
    assert len(results) == len(prompts)
    for prompt, result in zip(prompts, results, strict=True):
        alone = generate_text_simple(model, torch.tensor([prompt]), new_tokens, TINY["context_length"])
        assert torch.equal(result.cpu(), alone[0].cpu())
    reference = generate_batch(model, prompts, new_tokens, TINY["context_length"], use_cache=False)
    assert all(torch.equal(a, b) for a, b in zip(results, reference, strict=True))


@pytest.mark.parametrize("impl", IMPLS)
def test_batch_stops_each_row_at_end_of_text(impl):
    model = tiny_model(impl)
    prompts = [random_ids(1, n, seed=n)[0] for n in (2, 6, 4)]
    alone = [generate_text_simple(model, p[None], 25, 16)[0] for p in prompts]
    eos_id = alone[1][6 + 3].item()  # the fourth token generated for the second prompt
    results = generate_batch(model, prompts, 25, 16, eos_id=eos_id)
    for prompt, result in zip(prompts, results, strict=True):
        assert torch.equal(result, generate_fast(model, prompt[None], 25, 16, eos_id=eos_id)[0])
    assert len(results[1]) == 6 + 3


def test_batch_of_one_samples_like_generate():
    model = tiny_model("sdpa")
    prompt = random_ids(1, 5)[0]
    torch.manual_seed(11)
    expected = generate_fast(model, prompt[None], 30, 16, temperature=1.2, top_k=10)[0]
    torch.manual_seed(11)
    (result,) = generate_batch(model, [prompt], 30, 16, temperature=1.2, top_k=10)
    assert torch.equal(result, expected)


def test_batch_argument_errors_and_long_prompts():
    model = tiny_model()
    for bad in ([], "hello", [[]], [[1, 2], [[3]]]):
        with pytest.raises(ValueError, match="prompt"):
            generate_batch(model, bad, 5, 16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = generate_batch(model, [list(range(20)), [5, 6]], 3, 16)
    assert "more than the context of 16" in str(caught[0].message)
    assert caught[0].filename == __file__  # the warning points at the caller
    assert [len(r) for r in results] == [23, 5]
    assert torch.equal(results[0], generate_text_simple(model, torch.arange(20)[None], 3, 16)[0])


# --- bf16 on the CPU: packed weights ----------------------------------------------------------------------


@pytest.mark.skipif(not fast_generation._onednn_bf16(), reason="this CPU or torch build has no oneDNN bf16")
def test_bf16_forwards_compute_like_nn_linear_are_kept_and_are_put_back():
    model = tiny_model("sdpa").to(torch.bfloat16)
    ids = random_ids(2, 6)
    forwards = fast_generation._bf16_forwards(model.modules(), ids.device, batched=True)
    assert len(forwards) == 6 * TINY["n_layers"] + 1  # q, k, v, out_proj, ff x 2 per block; out_head
    assert all(f.keywords["packed"] is not None for f in forwards.values())  # a batch: packed weights
    with torch.no_grad():
        plain = model(ids)
        with fast_generation._use_forwards(forwards):
            fast = model(ids)
    torch.testing.assert_close(fast, plain, atol=0.05, rtol=0.02)
    assert not any("forward" in vars(m) for m in model.modules())  # nn.Linear.forward again
    again = fast_generation._bf16_forwards(model.modules(), ids.device)
    assert again[model.out_head] is forwards[model.out_head]  # kept, with its packed weight
    with torch.no_grad():
        model.out_head.weight.mul_(2)  # changed weights are packed again
    again = fast_generation._bf16_forwards(model.modules(), ids.device, batched=True)
    assert again[model.out_head] is not forwards[model.out_head]
    first_ff = model.trf_blocks[0].ff.layers[0]
    assert again[first_ff] is forwards[first_ff]  # the others stay as they were
    out = generate_fast(model, ids, 20, 16)
    assert out.shape == (2, 26)
    assert not any("forward" in vars(m) for m in model.modules())


@pytest.mark.skipif(not fast_generation._onednn_bf16(), reason="this CPU or torch build has no oneDNN bf16")
def test_bf16_weights_are_packed_only_for_batches_where_the_kernel_runs():
    """A packed copy doubles the weights' memory: at batch 1 the native kernel and the plain product do
    without it; a batch of texts gets it (and so does batch 1 where there is no kernel)."""
    model = tiny_model("sdpa").to(torch.bfloat16)
    ids = random_ids(1, 6)

    def packed_copies():
        entries = [fast_generation._BF16_FORWARDS.get(m) for m in model.modules()]
        return sum(e is not None and e[1].keywords["packed"] is not None for e in entries)

    assert generate_fast(model, ids, 5, 16).shape == (1, 11)
    assert packed_copies() == (0 if bf16_gemv() else 6 * TINY["n_layers"] + 1)
    assert [len(row) for row in generate_batch(model, [ids[0], ids[0, :4]], 5, 16)] == [11, 9]
    assert packed_copies() == 6 * TINY["n_layers"] + 1


def test_generate_sets_the_fast_step_up_once_and_leaves_the_model_as_it_was(monkeypatch):
    model = tiny_model("sdpa")
    setups = []
    walk = fast_generation._use_fused_ops

    def counted(modules):
        setups.append(1)
        return walk(modules)

    monkeypatch.setattr(fast_generation, "_use_fused_ops", counted)
    generate_fast(model, random_ids(1, 3), 6, 16)
    assert len(setups) == 1  # for generate's whole loop, not at each of its 6 steps
    generate_batch(model, [[1, 2], [3]], 4, 16)
    assert len(setups) == 2
    steps = generate_stream(model, random_ids(1, 3), 4, 16)
    next(steps)
    assert not any(m.fused for m in model.modules() if hasattr(m, "fused"))  # between steps: as it was
    list(steps)
    assert len(setups) == 2 + 4  # streaming: one per step
    assert len(fast_generation._IN_FAST_STEP) == 0


# --- the fixed-shape step (recorded as a CUDA graph on GPUs) ----------------------------------------------


@pytest.fixture
def fixed_shape_steps(monkeypatch):
    """generate's fixed-shape decoding step on any device, run without a recording: the code a CUDA graph
    records, tested on the CPU too."""

    def eager_step(model, idx, room, pad):
        if model.training:
            return None
        step = fast_generation._CudaGraphStep(model, idx.shape[0], room, idx.device, record=False)
        step.start(pad)
        return step

    monkeypatch.setattr(fast_generation, "_cuda_graph_step", eager_step)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("batch", "prompt_len", "new_tokens"), [(1, 5, 8), (3, 1, 40), (2, 16, 4)])
def test_fixed_shape_step_greedy_equals_generate_text_simple(
    fixed_shape_steps, impl, batch, prompt_len, new_tokens
):
    model = tiny_model(impl)
    ids = random_ids(batch, prompt_len)
    expected = generate_text_simple(model, ids, new_tokens, TINY["context_length"])
    assert torch.equal(generate_fast(model, ids, new_tokens, TINY["context_length"]), expected)


@pytest.mark.parametrize("impl", IMPLS)
def test_fixed_shape_step_samples_batches_and_stops_like_the_book_loop(fixed_shape_steps, impl):
    model = tiny_model(impl)
    ids = random_ids(2, 4)
    eos_id = eos_of(model, ids)
    results = []
    for use_cache in (False, True):
        torch.manual_seed(5)
        sampled = (generate_fast if use_cache else generate)(
            model, ids, 30, 16, temperature=1.3, top_k=7, eos_id=eos_id
        )
        results.append(sampled)
    assert torch.equal(*results)
    prompts = [random_ids(1, n, seed=n)[0].tolist() for n in (1, 5, 12, 3)]
    for prompt, result in zip(prompts, generate_batch(model, prompts, 20, 16), strict=True):
        assert torch.equal(result, generate_text_simple(model, torch.tensor([prompt]), 20, 16)[0])


def test_fixed_shape_step_masks_what_it_has_not_written(fixed_shape_steps, monkeypatch):
    """The step attends over the whole room; columns not written yet must count for nothing, even when they
    hold NaN (fresh memory can)."""
    model = tiny_model("sdpa")
    ids = random_ids(1, 3)
    expected = generate_text_simple(model, ids, 10, 16)
    make_cache = StaticKVCache.__init__

    def nan_filled(cache, n_layers, max_tokens, pad=None):
        make_cache(cache, n_layers, max_tokens, pad)
        for layer in cache.layers:
            layer.keys = torch.full((1, TINY["n_heads"], max_tokens, 8), float("nan"))
            layer.values = torch.full((1, TINY["n_heads"], max_tokens, 8), float("nan"))

    monkeypatch.setattr(StaticKVCache, "__init__", nan_filled)
    assert torch.equal(generate_fast(model, ids, 10, 16), expected)


def test_attention_backends_leave_out_cudnn_on_cuda_only():
    before = torch.backends.cuda.cudnn_sdp_enabled()
    with fast_generation._attention_backends(torch.device("cuda")):
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.mem_efficient_sdp_enabled()
    assert torch.backends.cuda.cudnn_sdp_enabled() == before
    with fast_generation._attention_backends(torch.device("cpu")):
        assert torch.backends.cuda.cudnn_sdp_enabled() == before


def test_a_recording_is_reused_only_where_it_fits():
    model = tiny_model()
    cpu = torch.device("cpu")
    signature = fast_generation._graph_signature(model, 2, 16, cpu)
    assert fast_generation._graph_signature(model, 2, 16, cpu) == signature
    assert fast_generation._graph_signature(model, 3, 16, cpu) != signature  # another batch size
    with torch.inference_mode():  # tensors made there cannot be written outside it
        assert fast_generation._graph_signature(model, 2, 16, cpu) != signature
    model.set_attention_impl("sdpa")
    assert fast_generation._graph_signature(model, 2, 16, cpu) != signature
    model.to(torch.bfloat16)  # new tensors at new addresses
    assert fast_generation._graph_signature(model.set_attention_impl("explicit"), 2, 16, cpu) != signature


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@CUDA
@pytest.mark.parametrize("impl", IMPLS)
def test_cuda_graph_is_recorded_once_and_replays_the_eager_step(impl):
    model = tiny_model(impl, "cuda")
    ids = random_ids(2, 5).cuda()
    first = generate_fast(model, ids, 9, 16)
    _, step = fast_generation._GRAPH_STEPS[model]
    assert step.graph is not None and step.cache.max_tokens == 16  # 14 tokens, rounded up to the context
    assert torch.equal(generate_fast(model, ids, 9, 16), first)
    assert fast_generation._GRAPH_STEPS[model][1] is step  # the recording was reused
    # the replayed step computes exactly what the same step computes without a recording
    eager = fast_generation._CudaGraphStep(model, 2, 16, ids.device, record=False)
    for s in (step, eager):
        s.start(None)
        with torch.no_grad():
            model(ids, kv_cache=s.cache)
    torch.testing.assert_close(step(ids[:, -1:]).clone(), eager(ids[:, -1:]), atol=1e-5, rtol=1e-5)
    assert torch.equal(first, generate_text_simple(model, ids, 9, 16))


@CUDA
def test_cuda_graph_made_in_inference_mode_and_used_outside():
    model = tiny_model("sdpa", "cuda")
    ids = random_ids(1, 5).cuda()
    with torch.inference_mode():
        inside = generate_fast(model, ids, 8, 16)
    assert torch.equal(
        generate_fast(model, ids, 8, 16), inside
    )  # a new recording, not a write to its tensors


@CUDA
def test_cuda_graph_steps_of_two_texts_at_once_stay_apart():
    model = tiny_model("sdpa", "cuda")
    a, b = random_ids(1, 4, seed=1).cuda(), random_ids(1, 6, seed=2).cuda()
    expected = [generate_fast(model, ids, 12, 16) for ids in (a, b)]
    streams = [generate_stream(model, ids, 12, 16) for ids in (a, b)]
    tokens = [[], []]
    for step_a, step_b in zip(*streams, strict=True):  # the two generations alternate, step by step
        tokens[0].append(step_a)
        tokens[1].append(step_b)
    for ids, got, want in zip((a, b), tokens, expected, strict=True):
        assert torch.equal(torch.cat([ids, *got], dim=1), want)


@CUDA
def test_bf16_generation_on_cuda_keeps_attention_off_cudnn(monkeypatch):
    """cuDNN's attention prepares a plan per shape, which made every bf16 step about 6x slower."""
    seen = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        seen.append(torch.backends.cuda.cudnn_sdp_enabled())
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    model = tiny_model("sdpa", "cuda").to(torch.bfloat16)
    generate(model, random_ids(1, 5).cuda(), 6, 16)
    generate_fast(model, random_ids(1, 5).cuda(), 6, 16)
    assert seen and not any(seen)
