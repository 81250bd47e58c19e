"""The CPU sine kernel against the formula over the whole float32 range (hypothesis): forward, backward (dz and the
A, f, d sums) and the WaveResNet conv step, in every decay mode, huge |z| included.

What "agrees" means, here and in `00a_kernels`. The reference is the formula as torch evaluates it in float32, with only
the transcendental functions made exact: t = f·z and v = −d·g(z) rounded to float32, then sin t, cos t and exp v in
float64 (t keeps an unbounded exponent where the float32 product would overflow, as the kernel does; the float32 formula
has sin(±inf) = NaN there). Each output and gradient must be within RTOL of the sum of the sizes of its terms (|sin|
and |cos| counted as 1, their errors being absolute), plus ABS times the factors applied after the product γ·e, which
can be subnormal and so rounded absolutely, by the formula as by the kernel. Where e underflows, h is exactly 0.
"""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from psann_lm.conv_kernels import conv_sine_step
from psann_lm.kernels import sine_kernel
from psann_lm.sine import DECAY_MODES, SineActivation, SineConfig, inverse_softplus, sine_activation, sine_formula

RTOL = 2.0 ** -20  # eight float32 roundings (2^-23 each), relative to the sizes of a quantity's terms
ABS = 2.0 ** -146  # sixteen half-spacings of float32's subnormals (2^-150 each)
F32_MAX = float(np.finfo(np.float32).max)

Z = st.floats(width=32, allow_nan=False, allow_infinity=False)  # every finite float32, subnormals and ±0 included


def floats32(lo: float, hi: float):
    "float32 values in [lo, hi] (bounds rounded to float32, as hypothesis requires)."
    return st.floats(float(np.float32(lo)), float(np.float32(hi)), width=32)


AMP, FREQ, DAMP = floats32(1e-3, 1e3), floats32(1e-6, 1e3), floats32(0.0, 10.0)
GRAD = floats32(-0.25, 0.25)  # |g| ≤ 1/4 over ≤ 3 rows: no float32 partial sum of g·z can overflow


def fuzz(n: int):
    "hypothesis settings: `n` examples, no deadline (the machine is shared), no example database."
    return settings(max_examples=n, deadline=None, database=None)


@st.composite
def cases(draw, dtype=torch.float32):
    "z of shape (rows, n), every float32 (rounded to `dtype`, kept finite), with per-feature A, f, d and an upstream g."
    rows, n = draw(st.integers(1, 3)), draw(st.integers(1, 8))
    z = torch.from_numpy(draw(arrays(np.float32, (rows, n), elements=Z))).to(dtype)
    z = torch.where(z.isfinite(), z, torch.zeros((), dtype=dtype))  # bfloat16 rounds the top of float32 to inf
    g = torch.from_numpy(draw(arrays(np.float32, (rows, n), elements=GRAD))).to(dtype)
    A, f, d = (torch.from_numpy(draw(arrays(np.float32, n, elements=s))) for s in (AMP, FREQ, DAMP))
    return z, A, f, d, g


def decay_arg(x: np.ndarray, mode: str) -> np.ndarray:
    return {"abs": np.abs(x), "relu": np.maximum(x, np.float32(0)), "none": np.zeros_like(x)}[mode]


def rounded_product(f: np.ndarray, z: np.ndarray) -> np.ndarray:
    "f·z rounded to float32's 24 significant bits, as float64: the float32 product, or its bits where it overflows."
    p = f.astype(np.float64) * z.astype(np.float64)  # exact: 24 + 24 bits
    with np.errstate(over="ignore"):
        t = p.astype(np.float32).astype(np.float64)
    return np.where(np.isfinite(t), t, (p * 2.0**-128).astype(np.float32).astype(np.float64) * 2.0**128)


def expected(z, A, f, d, g, mode) -> dict:
    "Each quantity as (want, tol) in float64, from float32 t and v: h, and with an upstream g, dz, dA, df and dd."
    x, A, f, d = (v.float().numpy() for v in (z, A, f, d))
    t = rounded_product(f, x)
    with np.errstate(over="ignore"):
        v = -d * decay_arg(x, mode)  # float32, as torch rounds it (−inf where it overflows)
    e, u, x = np.exp(v.astype(np.float64)), decay_arg(x, mode).astype(np.float64), x.astype(np.float64)
    s, c = (np.vectorize(fn, otypes=[float])(t) for fn in (math.sin, math.cos))  # libm: exact for any double
    A, f, d = (v.astype(np.float64) for v in (A, f, d))
    out = dict(h=(A * e * s, RTOL * A * e + ABS * (1 + A)), e=e)
    if g is None: return out
    g = g.double().numpy()
    slope = {"abs": np.sign(x), "relu": (x > 0) * 1.0, "none": 0 * x}[mode]
    P, Q, ge, amp = g * e * s, g * e * c, np.abs(g) * e, ABS * (1 + A)
    out["dz"] = (A * (f * Q - d * slope * P), RTOL * A * ge * (f + d * np.abs(slope)) + amp * (1 + f + d))
    out["dA"] = (P.sum(0), (RTOL * ge + ABS).sum(0))
    out["df"] = (A * (Q * x).sum(0), (RTOL * A * ge * np.abs(x) + amp * (1 + np.abs(x))).sum(0))
    out["dd"] = (-A * (P * u).sum(0), (RTOL * A * ge * u + amp * (1 + u)).sum(0))
    return out


def assert_agrees(got: torch.Tensor, want: np.ndarray, tol: np.ndarray, what: str):
    "got within tol of want (float64), or ±inf where want is within tol of float32's overflow."
    got = got.detach().double().numpy()
    close = np.abs(got - want) <= tol
    overflow = np.isinf(got) & (np.sign(got) == np.sign(want)) & (np.abs(want) + tol >= F32_MAX)
    bad = ~(close | overflow)
    assert not bad.any(), f"{what}: got {got[bad][:4]}, want {want[bad][:4]} ± {tol[bad][:4]}"


def bf16(want: np.ndarray, tol: np.ndarray, dtype) -> np.ndarray:
    "tol, plus the rounding of a result stored as bfloat16: half its 2^-7 spacing, doubled (2^-133 for subnormals)."
    return tol + 2.0**-8 * (np.abs(want) + tol) + 2.0**-133 if dtype == torch.bfloat16 else tol


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("mode", DECAY_MODES)
@fuzz(60)
@given(data=st.data())
def test_forward_agrees_over_all_floats(mode, dtype, data):
    z, A, f, d, _ = data.draw(cases(dtype))
    with torch.no_grad(), sine_kernel("cpp"):
        y = sine_activation(z, A, f, d, mode)
    assert y.dtype == dtype
    ex = expected(z, A, f, d, None, mode)
    (want, tol), got = ex["h"], y.double().numpy()
    assert_agrees(y, want, bf16(want, tol, dtype), f"h ({mode})")
    A64 = A.double().numpy()
    assert (np.abs(got) <= A64 + bf16(A64, 0.0, dtype)).all(), "|h| never exceeds A (rounded to the output dtype)"
    assert (got[ex["e"] < 2.0**-151] == 0).all(), "an envelope that underflows to 0 must give exactly 0"
    if dtype == torch.float32:  # the tolerance is float32's own: the torch formula meets it wherever it is finite
        torch_h = sine_formula(z, A, f, d, mode).double().numpy()
        assert (np.abs(torch_h - want) <= tol)[np.isfinite(torch_h)].all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("mode", DECAY_MODES)
@fuzz(60)
@given(data=st.data())
def test_backward_agrees_over_all_floats(mode, dtype, data):
    z, A, f, d, g = data.draw(cases(dtype))
    zt, At, ft, dt = (v.clone().requires_grad_() for v in (z, A, f, d))
    with sine_kernel("cpp"):
        gz, gA, gf, gd = torch.autograd.grad(sine_activation(zt, At, ft, dt, mode), (zt, At, ft, dt), g)
    ex = expected(z, A, f, d, g, mode)
    want, tol = ex["dz"]
    assert_agrees(gz, want, bf16(want, tol, dtype), f"dz ({mode})")
    for name, got in (("dA", gA), ("df", gf), ("dd", gd)):
        assert_agrees(got, *ex[name], f"{name} ({mode})")
    for grad in (gz, gA, gf, gd):
        assert not grad.isnan().any(), "finite inputs must give no NaN gradient"


@pytest.mark.parametrize("mode", DECAY_MODES)
@fuzz(40)
@given(data=st.data())
def test_conv_step_agrees_over_all_floats(mode, data):
    "WaveResNet's fused decoding step, one tap, on a unit input (RMSNorm gives exactly 1): z is the filter itself."
    B, n = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 8))
    w = torch.from_numpy(data.draw(arrays(np.float32, (n, 1, 1), elements=Z)))
    act = SineActivation(n, SineConfig(decay_mode=mode))
    with torch.no_grad():
        for raw, s in ((act.raw_amplitude, AMP), (act.raw_frequency, FREQ), (act.raw_damping, DAMP)):
            raw.copy_(inverse_softplus(torch.from_numpy(data.draw(arrays(np.float32, n, elements=s.filter(bool))))))
        x, state = torch.ones(B, 1, n), torch.empty(B, 0, n)
        with sine_kernel("cpp"):
            y = conv_sine_step(x, torch.ones(n), 0.0, state, w, 1, act)
        A, f, d = act.amplitude, act.frequency, act.damping
    z = w.reshape(1, n).expand(B, n)
    assert_agrees(y.reshape(B, n), *expected(z, A, f, d, None, mode)["h"], f"conv step ({mode})")


@pytest.mark.parametrize("mode", DECAY_MODES)
def test_huge_inputs_give_the_formula(mode):
    "The values the issue named: |z| = 1e30 and the top of float32, where the kernel used to give ±inf or |h| > A."
    z = torch.tensor([[1e30, -1e30, 3.4e38, -3.4e38, F32_MAX, 2.0**24 + 2, 1.5e7, -6.0e7]])
    one = torch.ones(z.shape[1])
    for d in (0.0, 1e-32, 0.01):
        with torch.no_grad(), sine_kernel("cpp"):
            y = sine_activation(z, one, one, one * d, mode)
        assert_agrees(y, *expected(z, one, one, one * d, None, mode)["h"], f"h ({mode}, d={d})")


@pytest.mark.parametrize("mode", DECAY_MODES)
def test_rows_out_of_range_across_blocks(mode):
    "Huge elements in a few rows (first and last ones of the backward's 64-row blocks among them), the rest ordinary,"
    "in a tensor large enough for the kernel to use every thread."
    gen = torch.Generator().manual_seed(0)
    rows, n = 150, 512
    z = torch.randn(rows, n, generator=gen) * 3
    for r in (0, 1, 63, 64, 65, 127, 149):
        z[r, torch.randperm(n, generator=gen)[:3]] = torch.tensor([1e30, -3e8, 2e4])
    A, f, d = (torch.rand(n, generator=gen) + 0.5 for _ in range(3))
    g = torch.rand(rows, n, generator=gen) * 0.5 - 0.25
    zt, At, ft, dt = (v.clone().requires_grad_() for v in (z, A, f, d))
    with sine_kernel("cpp"):
        y = sine_activation(zt, At, ft, dt, mode)
        grads = torch.autograd.grad(y, (zt, At, ft, dt), g)
    ex = expected(z, A, f, d, g, mode)
    for name, got in zip(("h", "dz", "dA", "df", "dd"), (y, *grads)):
        assert_agrees(got, *ex[name], f"{name} ({mode})")
