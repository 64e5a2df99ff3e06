"""Tests for shared/cpu_kernels.py: the native bf16 matrix-vector kernel that generation uses at batch 1 on
CPUs with AVX512-BF16, how it is built and cached, and what happens where it cannot run."""

import subprocess
import warnings

import pytest
import torch
import torch.nn.functional as F
from test_fast_generation import random_ids, tiny_model

from ch05_pretraining import fast_generation
from ch05_pretraining.fast_generation import generate_fast
from shared import cpu_kernels

needs_kernel = pytest.mark.skipif(
    cpu_kernels.bf16_gemv() is None, reason="needs Linux on x86-64 with AVX512-BF16 and a C compiler"
)


@pytest.fixture
def fresh_kernels(monkeypatch, tmp_path):
    """An empty build cache and no kernel loaded yet in this process (both put back afterwards)."""
    monkeypatch.setenv("LLMFS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cpu_kernels, "_loaded", {})
    return tmp_path


def _reference(x, weight, bias):
    """The product in fp32 from the same bf16 numbers: what both kernels round to bf16 at the end."""
    return F.linear(x.float(), weight.float(), None if bias is None else bias.float())


@needs_kernel
@pytest.mark.parametrize(
    "rows, cols",
    [(1, 1), (5, 7), (16, 32), (17, 33), (48, 768), (100, 3072), (50257, 768)],  # short last blocks too
)
@pytest.mark.parametrize("with_bias", [False, True])
def test_bf16_gemv_computes_what_nn_linear_does(rows, cols, with_bias):
    gen = torch.Generator().manual_seed(rows + cols)
    weight = torch.randn(rows, cols, generator=gen).to(torch.bfloat16)
    bias = torch.randn(rows, generator=gen).to(torch.bfloat16) if with_bias else None
    x = torch.randn(1, 1, cols, generator=gen).to(torch.bfloat16)
    out = cpu_kernels.bf16_linear_one_row(x, weight, bias)
    expected = _reference(x, weight, bias)
    assert out.shape == (1, 1, rows) and out.dtype == torch.bfloat16
    # one rounding to bf16 (half a unit in the last place, 2**-9 relative) plus fp32 sums in another order
    torch.testing.assert_close(out.float(), expected, rtol=2**-8, atol=1e-4 * cols**0.5)
    # nn.Linear's bf16 result: equal, or a bf16 step away. The step is that of the terms, not of the sum: some
    # CPUs' kernels (oneDNN on an AMD Zen 4 with AVX512-BF16) round the product before adding the bias, and
    # where the two cancel (0.640625 - 0.640625 + 0.00026) the step of 0.64 is 3% of the result.
    plain = F.linear(x, weight, bias).float()
    terms = F.linear(x, weight).float().abs() + (0 if bias is None else bias.float().abs())
    assert ((out.float() - plain).abs() <= terms * 2**-7).all()


@needs_kernel
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_bf16_gemv_gives_the_same_numbers_on_any_number_of_threads(threads):
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(1000, 96, generator=gen).to(torch.bfloat16)
    x = torch.randn(96, generator=gen).to(torch.bfloat16)
    out = torch.empty(1000, dtype=torch.bfloat16)
    single = torch.empty(1000, dtype=torch.bfloat16)
    kernel = cpu_kernels.bf16_gemv()
    kernel(weight.data_ptr(), x.data_ptr(), None, single.data_ptr(), 1000, 96, 1)
    kernel(weight.data_ptr(), x.data_ptr(), None, out.data_ptr(), 1000, 96, threads)
    assert torch.equal(out, single)  # each row is summed by one thread, in the same order


@needs_kernel
def test_the_library_is_built_once_and_then_loaded_from_the_cache(fresh_kernels, monkeypatch):
    assert cpu_kernels.bf16_gemv() is not None
    built = list((fresh_kernels / "kernels").iterdir())
    assert len(built) == 1 and built[0].suffix == ".so"  # no partial file left behind

    def no_compiler(*args, **kwargs):
        raise AssertionError("the cached library should have been loaded, not rebuilt")

    monkeypatch.setattr(subprocess, "run", no_compiler)
    monkeypatch.setattr(cpu_kernels, "_loaded", {})
    assert cpu_kernels.bf16_gemv() is not None


def test_a_failed_build_warns_once_briefly_and_leaves_pytorchs_path(fresh_kernels, monkeypatch):
    monkeypatch.setattr(cpu_kernels, "_usable", lambda: True)  # as on a CPU with AVX512-BF16
    compiler = fresh_kernels / "brokencc"  # a "compiler" that fails as gcc does, naming the file's folder
    compiler.write_text(
        "#!/bin/sh\necho 'In file included from /opt/x.h' >&2\n"
        "echo '/home/someone/course/shared/kernels/bf16_gemv.c:3:1: error: no AVX' >&2\nexit 1\n"
    )
    compiler.chmod(0o755)
    monkeypatch.setenv("CC", str(compiler))
    with pytest.warns(UserWarning) as caught:
        assert cpu_kernels.bf16_gemv() is None
    assert str(caught[0].message) == (
        "the native bf16 kernel is unavailable (brokencc could not build bf16_gemv.c: bf16_gemv.c:3:1: "
        "error: no AVX); generation uses PyTorch's kernels"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cpu_kernels.bf16_gemv() is None  # decided once per process
    assert not list((fresh_kernels / "kernels").iterdir())  # nothing half-built is kept


def test_the_kernels_can_be_switched_off(fresh_kernels, monkeypatch):
    monkeypatch.setenv("LLMFS_NATIVE_KERNELS", "0")
    assert cpu_kernels.bf16_gemv() is None
    assert not (fresh_kernels / "kernels").exists()  # not even built


# --- its use in generate ----------------------------------------------------------------------------------


@pytest.fixture
def kernel_calls(monkeypatch):
    """The (rows, cols) of every product that goes through the native kernel."""
    calls = []
    one_row = fast_generation.bf16_linear_one_row

    def counted(x, weight, bias):
        calls.append(tuple(weight.shape))
        return one_row(x, weight, bias)

    monkeypatch.setattr(fast_generation, "bf16_linear_one_row", counted)
    return calls


@needs_kernel
def test_generate_at_batch_1_uses_the_kernel_for_each_step_after_the_prompt(kernel_calls):
    model = tiny_model("sdpa").to(torch.bfloat16)
    ids = random_ids(1, 6)
    out = generate_fast(model, ids, 5, 16)
    linears = 6 * 2 + 1  # q, k, v, out_proj, ff x 2 per block; out_head
    assert len(kernel_calls) == 4 * linears  # the prompt's pass (6 rows) goes through oneDNN
    assert kernel_calls[-1] == (100, 32)  # the output layer
    assert out.shape == (1, 11)


@needs_kernel
def test_a_step_through_the_kernel_gives_the_logits_of_nn_linear(kernel_calls):
    model = tiny_model("sdpa").to(torch.bfloat16)
    token = random_ids(1, 1)
    with torch.no_grad():
        plain = model(token)
        with fast_generation._fast_step(model, token.device):
            fast = model(token)
    assert len(kernel_calls) == 6 * 2 + 1  # every linear of the step went through the kernel
    torch.testing.assert_close(fast, plain, atol=0.05, rtol=0.02)


@needs_kernel
def test_with_gradients_on_the_fast_step_computes_like_nn_linear(kernel_calls):
    model = tiny_model("sdpa").to(torch.bfloat16)
    with fast_generation._fast_step(model, torch.device("cpu")):
        logits = model(random_ids(1, 1))
    logits.float().sum().backward()  # autograd followed every product
    assert model.out_head.weight.grad is not None
    assert kernel_calls == []
