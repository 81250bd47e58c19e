"""The Triton sine kernels against float64 autograd, on CPU tensors under Triton's interpreter.

The kernels are built once per setting of TRITON_INTERPRET, at first use, and call no jit'd
helper of triton.language: so switching the interpreter on per test works in one pytest session,
whatever imported triton before. Two more tests compile them for sm_90 (no GPU needed) and run
them on a GPU (skipped without one).
"""
import importlib.util
import os
import re

import pytest
import torch

NO_TRITON = importlib.util.find_spec("triton") is None
pytestmark = pytest.mark.skipif(NO_TRITON, reason="triton is not installed")

from psann_lm.kernels import (_BWD_TILE, _MAX_ROW_BLOCKS, _sine_row_blocks,  # noqa: E402
                              _sine_tiles, _triton_backward, _triton_forward, sine_backend,
                              sine_kernel)
from psann_lm.sine import SineActivation, SineConfig  # noqa: E402

EPS = 2.0 ** -24  # float32 unit roundoff
MODES = ("abs", "relu", "none")


@pytest.fixture(autouse=True)
def interpret(monkeypatch):
    "Triton's interpreter on: the kernels run on CPU tensors."
    monkeypatch.setenv("TRITON_INTERPRET", "1")


def _inputs(rows, n, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    z = (3 * torch.randn(rows, n, generator=gen)).to(dtype)
    A = 0.5 + torch.rand(n, generator=gen)
    f = 0.5 + 4 * torch.rand(n, generator=gen)
    d = 0.3 * torch.rand(n, generator=gen)
    return z, A, f, d, torch.randn(rows, n, generator=gen).to(dtype)


def _reference(z, A, f, d, g, mode):
    "y and the four gradients in float64 by autograd, and each element's float32 error scale."
    x, A, f, d = (t.double().requires_grad_() for t in (z, A, f, d))
    u = {"abs": x.abs(), "relu": x.clamp_min(0), "none": torch.zeros_like(x)}[mode]
    e, t = torch.exp(-d * u), f * x
    y = A * e * torch.sin(t)
    grads = torch.autograd.grad(y, (x, A, f, d), g.double())
    with torch.no_grad():  # rounding f·x and d·u costs |f·x|·eps and d·u·eps; the rest a few eps
        k, ge = t.abs() + d * u + 8, (g.double() * e).abs()
        scale = dict(y=A * e * k, gz=A * ge * (f + d) * k, gA=ge * k, gf=A * ge * x.abs() * k,
                     gd=A * ge * u * k)
    return y.detach(), [g_.detach() for g_ in grads], scale


def _check(got, ref, scale, rows=1, out_dtype=torch.float32):
    "|got − ref| ≤ (4 + rows)·eps·scale (rows: a sum's terms) + the final rounding to out_dtype."
    # float32 → fp16 rounds to nearest: half an ulp, 2^-11 relative. float32 → bf16: the
    # interpreter truncates (GPUs round to nearest), up to one ulp, 2^-7 relative.
    unit = {torch.bfloat16: 2.0 ** -7, torch.float16: 2.0 ** -11}.get(out_dtype, 0.0)
    bound = (4 + rows) * EPS * scale + unit * ref.abs() + 1e-30
    err = (got.double() - ref).abs()
    assert (err <= bound).all(), f"error {err.max():.3g}, error/bound {(err / bound).max():.3g}"


def _check_all(z, A, f, d, g, mode, dtype=torch.float32):
    y_ref, (gz_ref, gA_ref, gf_ref, gd_ref), sc = _reference(z, A, f, d, g, mode)
    m, rows = MODES.index(mode), z.shape[0]
    y = _triton_forward(z, A, f, d, m)
    assert y.dtype == z.dtype and y.shape == z.shape
    _check(y, y_ref, sc["y"], out_dtype=dtype)
    gz, gA, gf, gd = _triton_backward(g, z, A, f, d, m)
    assert gz.dtype == z.dtype and gA.dtype == gf.dtype == gd.dtype == torch.float32
    _check(gz, gz_ref, sc["gz"], out_dtype=dtype)
    for got, ref, key in ((gA, gA_ref, "gA"), (gf, gf_ref, "gf"), (gd, gd_ref, "gd")):
        _check(got, ref, sc[key].sum(0), rows=rows)


@pytest.mark.parametrize("mode", MODES)
def test_triton_sine_matches_float64(mode):
    "Forward and the four gradients; odd widths, two row blocks (40 rows), two feature blocks."
    for rows, n in ((5, 7), (40, 33), (3, 300)):
        blocks = _sine_row_blocks(rows, _sine_tiles(rows, n, _BWD_TILE, 256)[0])[1]
        assert blocks == (2 if rows == 40 else 1)
        _check_all(*_inputs(rows, n), mode)


def test_triton_forward_wide_rows():
    "Features beyond one forward block (1024): the mask of the last block."
    z, A, f, d, _ = _inputs(2, 1030)
    y_ref, _, sc = _reference(z, A, f, d, torch.ones_like(z), "abs")
    _check(_triton_forward(z, A, f, d, 0), y_ref, sc["y"])


@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float16), ids=("bf16", "fp16"))
def test_triton_half_inputs(dtype):
    "16-bit z and grad: float32 math, so only the final rounding of y and gz to 16 bits is added."
    _check_all(*_inputs(9, 33, dtype), "relu", dtype)


def test_triton_empty_and_layout():
    "Empty inputs launch nothing; the row blocks cover every row, at most 512, partials small."
    z, one = torch.empty(0, 7), torch.ones(7)
    assert _triton_forward(z, one, one, one, 0).shape == (0, 7)
    gz, *gp = _triton_backward(z, z, one, one, one, 0)
    assert gz.shape == (0, 7) and all(g.tolist() == [0.0] * 7 for g in gp)
    for rows, n in ((1, 7), (40, 33), (131072, 3072), (10**6, 7), (777, 4096)):
        br, bn = _sine_tiles(rows, n, _BWD_TILE, 256)
        per, blocks = _sine_row_blocks(rows, br)
        assert per % br == 0 and (blocks - 1) * per < rows <= blocks * per
        assert blocks <= _MAX_ROW_BLOCKS
        assert blocks <= -(-rows // 32)  # partials (blocks, 3, n): ≤ 3/32 of z's size, or 1 block


def test_triton_module_bounds_and_frozen():
    "Through the op: SineActivation with active bounds and a frozen damping, as in float64."
    torch.manual_seed(0)
    cfg = SineConfig(amp_init_std=0.6, amp_bounds=(0.5, 1.2), freq_init=2.0, freq_init_std=1.0,
                     freq_bounds=(1.0, 3.0), decay_mode="relu",
                     learnable=("amplitude", "frequency"))
    act = SineActivation(33, cfg)
    assert (act.amplitude == 0.5).any() and (act.frequency == 3.0).any(), "bounds must be active"
    z, g = 2 * torch.randn(2, 5, 33), torch.randn(2, 5, 33)
    act64 = SineActivation(33, cfg).double()
    act64.load_state_dict(act.state_dict())
    z32, z64 = z.clone().requires_grad_(), z.double().requires_grad_()
    with sine_kernel("triton"):
        assert sine_backend(z32) == "triton"
        y = act(z32)
        grads = torch.autograd.grad(y, (z32, act.raw_amplitude, act.raw_frequency), g)
    y64 = act64(z64)
    grads64 = torch.autograd.grad(y64, (z64, act64.raw_amplitude, act64.raw_frequency), g.double())
    assert act.raw_damping.grad is None and not act.raw_damping.requires_grad
    for a, b in zip((y, *grads), (y64, *grads64)):
        assert (a.double() - b).abs().max() <= 1e-5 * b.abs().max()
    assert (grads[1][act.amplitude == 0.5] == 0).all(), "a clamped amplitude gets no gradient"


def test_triton_compiles_for_sm90(monkeypatch, tmp_path):
    "The compiled kernels build for an H100/H200 here, with no GPU: accurate sin/cos, no atomics."
    monkeypatch.delenv("TRITON_INTERPRET")
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))  # compile afresh; leave ~/.triton alone
    nvidia = pytest.importorskip("triton.backends.nvidia.compiler")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from psann_lm.kernels import (_sine_bwd_kernel, _sine_bwd_sum_kernel, _sine_fwd_kernel,
                                  _triton_kernel)
    if not os.access(nvidia.get_ptxas(90).path, os.X_OK): pytest.skip("triton has no ptxas here")
    vecs = dict(A_ptr="*fp32", f_ptr="*fp32", d_ptr="*fp32", rows="i32", n="i32")
    const = dict(MODE="constexpr", BLOCK_R="constexpr", BLOCK_N="constexpr")
    bf16 = dict(g_ptr="*bf16", z_ptr="*bf16", gz_ptr="*bf16")
    sums = dict(part_ptr="*fp32", gA_ptr="*fp32", gf_ptr="*fp32", gd_ptr="*fp32", A_ptr="*fp32",
                row_blocks="i32", n="i32", BLOCK_N="constexpr")
    builds = [(_sine_fwd_kernel, dict(z_ptr="*bf16", y_ptr="*bf16", **vecs, **const),
               dict(MODE=0, BLOCK_R=2, BLOCK_N=1024)),
              (_sine_bwd_kernel, dict(**bf16, part_ptr="*fp32", **vecs, rows_per_prog="i32",
                                      **const),
               dict(MODE=0, BLOCK_R=4, BLOCK_N=256)),
              (_sine_bwd_sum_kernel, sums, dict(BLOCK_N=256))]
    for build, sig, consts in builds:
        kernel = _triton_kernel(build)
        assert isinstance(kernel, triton.JITFunction)
        src = ASTSource(fn=kernel, signature=sig, constexprs=consts)
        options = dict(num_warps=8, enable_fp_fusion=True)
        ptx = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options).asm["ptx"]
        assert not re.search(r"\b(atom|red)\.", ptx), f"{build.__name__}: atomics"
        assert "sin.approx" not in ptx and "cos.approx" not in ptx
        if build is not _sine_bwd_sum_kernel: assert "__nv_sinf" in ptx


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_triton_cuda_matches_float64(monkeypatch):
    "On a GPU: the kernels against the float64 formula at MLP sizes; the backward reproducible."
    monkeypatch.delenv("TRITON_INTERPRET")
    from psann_lm.sine import sine_backward_formula, sine_formula
    for rows, n, dtype, mode in ((4096, 3072, torch.bfloat16, 0), (1000, 7, torch.float32, 1)):
        z, A, f, d, g = (t.cuda() for t in _inputs(rows, n, dtype))
        with sine_kernel("triton"): assert sine_backend(z) == "triton"
        y = _triton_forward(z, A, f, d, mode)
        y64 = sine_formula(z.double(), A.double(), f.double(), d.double(), MODES[mode])
        unit = 2.0 ** -8 if dtype == torch.bfloat16 else 0.0   # a GPU rounds to nearest
        assert ((y.double() - y64).abs() <= unit * y64.abs() + 1e-5).all()
        first, second = (_triton_backward(g, z, A, f, d, mode) for _ in range(2))
        assert all(torch.equal(a, b) for a, b in zip(first, second)), "must be reproducible"
        want = sine_backward_formula(*(t.double() for t in (g, z, A, f, d)), MODES[mode])
        assert ((first[0].double() - want[0]).abs() <= unit * want[0].abs() + 1e-4).all()
        for a, b in zip(first[1:], want[1:]):
            assert (a.double() - b).abs().max() <= 1e-5 * b.abs().max() + 1e-6
