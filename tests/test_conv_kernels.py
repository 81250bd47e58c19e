"""WaveResNet's fused conv branch (norm → causal dilated depthwise conv → sine) against float64."""
import copy
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from psann_lm.blocks import AttentionContext, TemporalConv
from psann_lm.conv_kernels import conv_backend, conv_branch
from psann_lm.kernels import sine_kernel
from psann_lm.sine import DECAY_MODES, SineActivation, SineConfig, saved_tensor_bytes

SINE = dict(freq_init_std=0.5, damp_init_std=0.05, amp_init_std=0.2)


def _case(B, T, n, k, mode, dtype=torch.float32, masked=False, docs=False, seed=0):
    "An activation, inputs x, gain, w, an optional mask and document ids, and an output gradient."
    torch.manual_seed(seed)
    act = SineActivation(n, SineConfig(decay_mode=mode, **SINE))
    x = (2 * torch.randn(B, T, n)).to(dtype).requires_grad_()
    gain = (torch.rand(n) + 0.5).requires_grad_()
    w = torch.randn(n, 1, k, requires_grad=True)
    mask = torch.rand(B, T) > 0.2 if masked else None
    doc = torch.cumsum((torch.rand(B, T) > 0.7).long(), 1) if docs else None
    return act, x, gain, w, mask, doc, torch.randn(B, T, n).to(dtype)


def _unfused64(act, x, gain, w, mask, doc, dil):
    "The branch as separate torch ops (F.rms_norm, F.conv1d, the sine) in float64, and its inputs."
    a64 = copy.deepcopy(act).double()
    x64, g64, w64 = (t.detach().double().requires_grad_() for t in (x, gain, w))
    h = F.rms_norm(x64, (x64.shape[-1],), g64, 1e-6)
    if mask is not None: h = h * mask[..., None]
    k, T = w.shape[-1], x.shape[1]
    if doc is None:
        padded = F.pad(h.transpose(1, 2), ((k - 1) * dil, 0))
        y = F.conv1d(padded, w64, groups=h.shape[-1], dilation=dil).transpose(1, 2)
    else:  # per tap, dropping taps that reach an earlier document
        y = 0
        for i in range(k):
            lag = (k - 1 - i) * dil
            if lag >= T: continue
            same = F.pad((doc[:, lag:] == doc[:, :T - lag]).double(), (lag, 0))[..., None]
            y = y + w64[:, 0, i] * F.pad(h, (0, 0, lag, 0))[:, :T] * same
    return a64(y), [x64, g64, w64, a64.raw_amplitude, a64.raw_frequency, a64.raw_damping]


def _compare(choice, B, T, n, k, dil, mode, dtype=torch.float32, masked=False, docs=False,
             tol=3e-5):
    act, x, gain, w, mask, doc, g = _case(B, T, n, k, mode, dtype, masked, docs)
    with sine_kernel(choice):
        out = conv_branch(x, gain, 1e-6, w, dil, act, mask, doc)
        ins = [x, gain, w, act.raw_amplitude, act.raw_frequency, act.raw_damping]
        got = [out, *torch.autograd.grad(out, ins, g)]
    ref, ins64 = _unfused64(act, x, gain, w, mask, doc, dil)
    want = [ref, *torch.autograd.grad(ref, ins64, g.double())]
    names = ["out", "x", "gain", "w", "A", "f", "d"]
    for name, a, b in zip(names, got, want):
        assert a.dtype == (dtype if name in ("out", "x") else torch.float32), name
        err = (a.double() - b).abs().max() / b.abs().max().clamp_min(1)
        assert err <= tol, f"{choice} {mode} k={k} δ={dil}: {name} off by {err:.2e} of its max"


@pytest.mark.parametrize("choice", ["cpp", "torch"])
@pytest.mark.parametrize("mode", DECAY_MODES)
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_conv_branch_matches_float64(choice, mode, k):
    for dil in (1, 3):
        _compare(choice, 2, 11, 24, k, dil, mode)


@pytest.mark.parametrize("choice", ["cpp", "torch"])
def test_conv_branch_mask_and_documents(choice):
    _compare(choice, 2, 13, 16, 3, 2, "abs", masked=True)
    _compare(choice, 2, 13, 16, 3, 2, "relu", docs=True)
    _compare(choice, 3, 13, 16, 4, 1, "none", masked=True, docs=True)


@pytest.mark.parametrize("choice", ["cpp", "torch"])
def test_conv_branch_bfloat16(choice):
    "bfloat16 inputs: the math in float32, so only the rounding of x, dx and out remains."
    _compare(choice, 2, 11, 32, 3, 2, "abs", dtype=torch.bfloat16, tol=2e-2)


def test_conv_branch_backend():
    x = torch.randn(1, 2, 4)
    assert conv_backend(x) == "cpp" and conv_backend(x.bfloat16()) == "cpp"
    assert conv_backend(x.double()) == "torch"
    with sine_kernel("torch"): assert conv_backend(x) == "torch"
    with sine_kernel("cpp"), pytest.raises(ValueError, match="float32 or bfloat16"):
        conv_backend(x.double())


def test_conv_branch_deterministic_and_lean():
    "Two backward passes give the same bits (fixed-order sums); autograd keeps only x and rinv."
    torch.set_num_threads(2)
    act, x, gain, w, *_ = _case(2, 64, 512, 3, "abs")
    ins = [x, gain, w, act.raw_amplitude, act.raw_frequency, act.raw_damping]
    loss = lambda: conv_branch(x, gain, 1e-6, w, 2, act).square().sum()
    runs = [torch.autograd.grad(loss(), ins) for _ in range(2)]
    for a, b in zip(*runs): assert torch.equal(a, b)
    saved = saved_tensor_bytes(lambda x: conv_branch(x, gain, 1e-6, w, 2, act), x)
    vectors = 4 * 10 * 512   # gain, A, f, d, their softplus inputs, w (3 taps)
    assert saved <= x.numel() * 4 + 2 * 64 * 4 + vectors, saved


@pytest.mark.parametrize("choice", ["cpp", "torch"])
def test_temporal_conv_matches_unfused(choice):
    "TemporalConv's fused training path against its unfused ops (norm, taps, sine) in float64."
    torch.manual_seed(1)
    tc = TemporalConv(16, kernel=3, dilation=2, sine=SineConfig(**SINE))
    x = torch.randn(2, 10, 16, requires_grad=True)
    mask, doc = torch.rand(2, 10) > 0.2, torch.tensor([[0] * 4 + [1] * 6, [0] * 10])
    ctx = AttentionContext(torch.arange(10).expand(2, 10), token_mask=mask, document_ids=doc)
    with sine_kernel(choice): out = tc(x, ctx)
    got = torch.autograd.grad(out.sum(), [x, *tc.parameters()])
    t64 = copy.deepcopy(tc).double()
    x64 = x.detach().double().requires_grad_()
    h = t64.norm(x64) * mask[..., None]
    seq = torch.cat([h.new_zeros(2, t64.context, 16), h], 1)
    ref = t64.proj(t64.act(t64._taps(seq, 10, doc)))
    want = torch.autograd.grad(ref.sum(), [x64, *t64.parameters()])
    assert (out.double() - ref).abs().max() <= 1e-5 * ref.abs().max()
    for a, b in zip(got, want):
        assert (a.double() - b).abs().max() <= 1e-5 * b.abs().max().clamp_min(1e-12)


def test_temporal_conv_compiled_matches_eager():
    "torch.compile(fullgraph=True) of TemporalConv's forward, then backward, against eager (CPU)."
    torch.manual_seed(2)
    tc = TemporalConv(16, kernel=3, dilation=2, sine=SineConfig(**SINE))
    x = torch.randn(2, 9, 16)
    ctx = AttentionContext(torch.arange(9).expand(2, 9))
    def grads(fn):
        out = fn(x, ctx)
        return [out, *torch.autograd.grad(out.square().sum(), list(tc.parameters()))]
    eager, compiled = grads(tc), grads(torch.compile(tc, fullgraph=True))
    for a, b in zip(eager, compiled):
        assert (a - b).abs().max() <= 1e-4 * a.abs().max().clamp_min(1e-12)


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_conv_branch_triton_interpreter():
    "The Triton kernels on CPU tensors by Triton's interpreter (tiny shapes), in a fresh process."
    # the interpreter only works if TRITON_INTERPRET=1 is set before triton is first imported.
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            "import torch\nfrom test_conv_kernels import _compare\n"
            "_compare('triton', 2, 7, 20, 3, 2, 'abs')\n"
            "_compare('triton', 2, 7, 20, 2, 1, 'relu', masked=True)\n"
            "_compare('triton', 2, 7, 20, 4, 3, 'none', docs=True)\n"
            "_compare('triton', 1, 5, 8, 3, 1, 'abs', dtype=torch.bfloat16, masked=True,"
            " docs=True,"
            " tol=3e-2)\n"
            "print('ok')")
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=600)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-3000:]


def _compile_sm90():
    "Compile the four Triton kernels to PTX for sm_90 (no GPU needed); return {name: has atomics}."
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from psann_lm.conv_kernels import _triton_conv_kernels
    f32 = lambda *names: {k: "*fp32" for k in names}
    const = lambda *names: {k: "constexpr" for k in names}
    dims = {"rows": "i32", "T": "i32", "n": "i32"}
    flags = dict(DIL=2, K=3, HAS_MASK=True, HAS_DOC=True)
    conv = const("DIL", "K", "HAS_MASK", "HAS_DOC", "BLOCK_R", "BLOCK_N")
    vecs = f32("rinv_ptr", "gain_ptr", "w_ptr", "A_ptr", "f_ptr", "d_ptr", "mask_ptr")
    rinv, fwd, bwd, nbwd = _triton_conv_kernels(False)
    builds = [
        (rinv, {"x_ptr": "*bf16", **f32("rinv_ptr"), "rows": "i32", "n": "i32", "eps": "fp32",
                **const("BLOCK_R", "BLOCK_N")}, dict(BLOCK_R=4, BLOCK_N=1024)),
        (fwd, {"x_ptr": "*bf16", **vecs, "doc_ptr": "*i64", "out_ptr": "*bf16", **dims, **conv,
               "MODE": "constexpr"}, dict(flags, MODE=0, BLOCK_R=16, BLOCK_N=256)),
        (bwd, {"g_ptr": "*bf16", "x_ptr": "*bf16", **vecs, "doc_ptr": "*i64",
               **f32("dy_ptr", "part_ptr"), **dims, **conv, "MODE": "constexpr"},
         dict(flags, MODE=1, BLOCK_R=8, BLOCK_N=256)),
        (nbwd, {"x_ptr": "*bf16", **f32("rinv_ptr", "gain_ptr", "w_ptr", "mask_ptr"),
                "doc_ptr": "*i64", "dy_ptr": "*fp32", "dx_ptr": "*bf16", "part_ptr": "*fp32",
                **dims, **conv}, dict(flags, BLOCK_R=4, BLOCK_N=1024)),
    ]
    out = {}
    for kernel, sig, consts in builds:
        assert isinstance(kernel, triton.JITFunction)
        src = ASTSource(fn=kernel, signature=sig, constexprs=consts)
        ptx = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=8))
        out[kernel.__name__] = bool(re.search(r"\b(atom|red)\.", ptx.asm["ptx"]))
    return out


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_conv_triton_compiles_for_sm90(tmp_path):
    "The CUDA kernels build for an H100/H200 here (fresh process, no interpreter): no atomics."
    pytest.importorskip("triton.backends.nvidia.compiler")
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            "from test_conv_kernels import _compile_sm90\nprint(_compile_sm90())")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path), OMP_NUM_THREADS="1", TRITON_DEFAULT_FP_FUSION="1")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    names = ("_rinv_kernel", "_conv_fwd_kernel", "_conv_bwd_kernel", "_norm_bwd_kernel")
    assert res.stdout.strip() == str({k: False for k in names}), res.stdout
