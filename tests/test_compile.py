"""`torch.compile(fullgraph=True)` traces both bases in one graph each, training and decoding, and matches eager.

The sine (and WaveResNet's conv branch) are registered ops with fake implementations, so dynamo never meets a ctypes
call; attention's causal flag stays a Python bool while decoding. Any graph break fails these tests (fullgraph=True).
"""
import pytest
import torch

from psann_lm.blocks import DecoderCache
from psann_lm.model import DecoderLM, ModelConfig

TOL = 1e-4


def tiny(base: str, **kw) -> DecoderLM:
    torch.manual_seed(0)
    return DecoderLM(ModelConfig(base=base, vocab_size=64, d_model=32, n_layers=2, n_heads=2, max_seq_len=32, **kw))


def max_diff(a, b) -> float:
    return max((x.detach() - y.detach()).abs().max().item() for x, y in zip(a, b))


@pytest.mark.parametrize("base", ["respsann", "waveresnet"])
def test_compiled_training_step_matches_eager(base):
    net = tiny(base)
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(1))
    params = list(net.parameters())
    eager = net(ids, labels=ids).loss
    g_eager = torch.autograd.grad(eager, params)
    compiled = torch.compile(net, fullgraph=True)(ids, labels=ids).loss
    g_compiled = torch.autograd.grad(compiled, params)
    assert abs(eager.item() - compiled.item()) <= TOL
    assert max_diff(g_eager, g_compiled) <= TOL


@pytest.mark.parametrize("base", ["respsann", "waveresnet"])
def test_compiled_decoding_step_matches_eager(base):
    net = tiny(base).eval()
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(2))
    step = torch.compile(lambda x, cache: net(x, cache=cache).logits, fullgraph=True)
    with torch.no_grad():
        c_eager, c_compiled = DecoderCache(), DecoderCache()
        assert max_diff([net(ids[:, :8], cache=c_eager).logits], [step(ids[:, :8], c_compiled)]) <= TOL   # prefill
        for t in range(8, 11):                                                                           # cached steps
            want, got = net(ids[:, t:t + 1], cache=c_eager).logits, step(ids[:, t:t + 1], c_compiled)
            assert max_diff([want], [got]) <= TOL, t
    assert c_compiled.length == c_eager.length == 11


def test_fit_with_compile_trains_waveresnet_as_eager(tmp_path):
    "TrainConfig.compile=True through the public API: WaveResNet's fused conv branch and the sine in one graph, same losses."
    import warnings
    from psann_lm import psannLM, psannLMDataPrep
    from psann_lm.dataprep import default_corpus
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = psannLMDataPrep(default_corpus()[:4], vocab_size=300, max_length=16, cache_dir=tmp_path, progress=False)
    losses = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        m = psannLM(base="waveresnet", d_model=16, n_layers=1, n_heads=2)
        m.fit(data, compile=compiled, max_steps=3, log_interval=1, batch_size=4, progress=False, peak_flops=1e12)
        losses[compiled] = [r["loss"] for r in m.last_fit["history"] if "loss" in r]
    assert len(losses[True]) == 3
    assert max(abs(a - b) for a, b in zip(losses[False], losses[True])) <= TOL


@pytest.mark.parametrize("base", ["respsann", "waveresnet"])
def test_compiled_with_a_symbolic_length_matches_eager(base):
    "A length that compile has seen vary is symbolic while the labels' is not (an earlier compile, a new prompt length)."
    net = tiny(base)
    ids = torch.randint(0, 64, (3, 11), generator=torch.Generator().manual_seed(3))
    x = ids[:, :10].clone()
    torch._dynamo.maybe_mark_dynamic(x, 1)
    got, want = torch.compile(net, fullgraph=True)(x, labels=ids).loss, net(x, labels=ids).loss   # labels (B, T + 1)
    assert abs(got.item() - want.item()) <= TOL
