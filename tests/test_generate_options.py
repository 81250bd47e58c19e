"""Generation options users expect: `num_return_sequences`, per-token log-probabilities, and a warning
when a prompt is cut to the model's context."""
import math
import warnings

import pytest
import torch

from psann_lm import psannLM, psannLMDataPrep
from psann_lm.dataprep import default_corpus
from psann_lm.generation import SamplingConfig, generate_tokens
from psann_lm.model import DecoderLM, ModelConfig


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(base="waveresnet", **kw):
    torch.manual_seed(0)
    cfg = dict(base=base, vocab_size=61, d_model=32, n_layers=2, n_heads=4, max_seq_len=48, dilation_cycle=2)
    return DecoderLM(ModelConfig(**{**cfg, **kw})).eval()


def left_padded(prompts):
    W = max(len(p) for p in prompts)
    ids = torch.stack([torch.cat([torch.zeros(W - len(p), dtype=torch.long), p]) for p in prompts])
    mask = torch.stack([(torch.arange(W) >= W - len(p)).long() for p in prompts])
    return ids, mask


PROMPTS = [torch.randint(1, 61, (n,), generator=torch.Generator().manual_seed(n)) for n in (9, 4, 13)]


def recompute(net, prompt, new, sampling):
    "Log-probabilities of `new` after `prompt`: one uncached forward pass over both, the same processors."
    full = torch.cat([prompt, new])[None]
    with torch.no_grad(): logits = net(full).logits[0, len(prompt) - 1:-1]
    return torch.stack([sampling.process(logits[i:i + 1], full[:, :len(prompt) + i]).log_softmax(-1)[0, t]
                        for i, t in enumerate(new.tolist())])


SAMPLINGS = {
    "sampled": dict(temperature=0.8, top_k=20),
    "nucleus+penalty": dict(temperature=1.3, top_p=0.9, min_p=0.02, repetition_penalty=1.4),
    "greedy+penalty": dict(temperature=0, repetition_penalty=1.2),
}


@pytest.mark.parametrize("base", ["respsann", "waveresnet"])
@pytest.mark.parametrize("kind", sorted(SAMPLINGS))
def test_logprobs_equal_a_full_forward_pass(base, kind):
    net, s = tiny(base), SamplingConfig(**SAMPLINGS[kind])
    ids, mask = left_padded(PROMPTS)
    new, lp = generate_tokens(net, ids, mask, 15, s, generator=torch.Generator().manual_seed(1), return_logprobs=True)
    assert lp.shape == new.shape == (3, 15) and lp.dtype == torch.float32
    for r, p in enumerate(PROMPTS):
        want = recompute(net, p, new[r], s)
        assert (lp[r] - want).abs().max() <= 1e-5, f"row {r}: {lp[r]} vs {want}"
        assert (lp[r] <= 0).all()
    # the tokens are those generated without log-probabilities
    assert torch.equal(new, generate_tokens(net, ids, mask, 15, s, generator=torch.Generator().manual_seed(1)))


def test_logprobs_are_nan_after_a_row_ends():
    net, greedy = tiny(), SamplingConfig(temperature=0)
    ids, mask = left_padded(PROMPTS)
    first = generate_tokens(net, ids, mask, 12, greedy)
    eos = int(first[0, 3])
    new, lp = generate_tokens(net, ids, mask, 12, greedy, eos_ids=[eos], return_logprobs=True)
    end = new[0].tolist().index(eos)
    assert torch.isfinite(lp[0, :end + 1]).all(), "the end token has its log-probability"
    assert torch.isnan(lp[0, end + 1:]).all() and (new[0, end + 1:] == 0).all()
    assert math.isclose(lp[0].nansum().item(), recompute(net, PROMPTS[0], new[0, :end + 1], greedy).sum().item(),
                        abs_tol=1e-4)


def test_n_sequences_are_reproducible_in_flat_order():
    net, s = tiny(), SamplingConfig(temperature=1.0)
    ids, mask = left_padded(PROMPTS)
    run = lambda **kw: generate_tokens(net, ids, mask, 10, s, generator=torch.Generator().manual_seed(7), **kw)
    three = run(num_return_sequences=3)
    assert three.shape == (9, 10)
    assert torch.equal(three, run(num_return_sequences=3)), "a seed reproduces"
    repeated = generate_tokens(net, ids.repeat_interleave(3, 0), mask.repeat_interleave(3, 0), 10, s,
                               generator=torch.Generator().manual_seed(7))
    assert torch.equal(three, repeated), "rows r·n … r·n+n-1 continue prompt r"
    assert len({tuple(r) for r in three[:3].tolist()}) == 3, "three different samples of the first prompt"
    new, lp = run(num_return_sequences=3, return_logprobs=True)
    assert torch.equal(new, three) and lp.shape == (9, 10)
    for r in range(9): assert (lp[r] - recompute(net, PROMPTS[r // 3], new[r], s)).abs().max() <= 1e-5


def test_n_sequences_are_independent_draws_from_the_distribution():
    "4000 one-token samples of one prompt: their frequencies are the model's probabilities (copies would not be)."
    net, s = tiny(), SamplingConfig(temperature=1.0)
    p = PROMPTS[0][None]
    draws = generate_tokens(net, p, None, 1, s, generator=torch.Generator().manual_seed(0), num_return_sequences=4000)
    with torch.no_grad(): probs = net(p).logits[0, -1].float().softmax(-1)
    freq = torch.bincount(draws[:, 0], minlength=61).double() / 4000
    tv = 0.5 * (freq - probs.double()).abs().sum().item()
    assert tv < 0.1, f"total variation {tv:.3f} from the model's distribution"
    assert (draws[1:, 0] == draws[:-1, 0]).double().mean() < 0.5


def test_greedy_with_several_sequences_and_bad_values_are_refused():
    net = tiny()
    ids, mask = left_padded(PROMPTS)
    for sampling, kw, says in [
            (SamplingConfig(temperature=0), dict(num_return_sequences=2), "would return 2 identical copies"),
            (SamplingConfig(do_sample=False), dict(num_return_sequences=3), "greedy decoding"),
            (SamplingConfig(), dict(num_return_sequences=0), "num_return_sequences must be a positive int, got 0"),
            (SamplingConfig(), dict(num_return_sequences=2.0), "num_return_sequences must be a positive int"),
            (SamplingConfig(), dict(return_logprobs="yes"), "return_logprobs must be true or false, got 'yes'"),
            (SamplingConfig(), dict(max_new_tokens=0), "max_new_tokens must be a positive int, got 0"),
            (SamplingConfig(), dict(max_new_tokens=10**12, num_return_sequences=4), "× 4 sequences needs")]:
        kw = {"max_new_tokens": 5, **kw}
        with pytest.raises(ValueError, match=says.replace("(", r"\(")):
            generate_tokens(net, ids, mask, sampling=sampling, **kw)


def caught(fn):
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        fn()
    return [w for w in got if "context" in str(w.message)]


def test_a_warning_exactly_when_a_prompt_is_cut():
    net, greedy = tiny(), SamplingConfig(temperature=0)            # max_seq_len 48: prompts keep 47 tokens
    x = torch.randint(1, 61, (60,), generator=torch.Generator().manual_seed(3))
    run = lambda ids, mask=None: caught(lambda: generate_tokens(net, ids, mask, 2, greedy))
    assert run(x[:47][None]) == [], "47 tokens fit"
    got = run(x[:48][None])
    assert len(got) == 1 and "prompt(s) [0]" in str(got[0].message) and "last 47 tokens" in str(got[0].message)
    ids, mask = left_padded([x[:10], x[:47]])
    assert run(torch.cat([torch.zeros(2, 5, dtype=torch.long), ids], 1),
               torch.cat([torch.zeros(2, 5, dtype=torch.long), mask], 1)) == [], "only padding is cut"
    ids, mask = left_padded([x[:10], x[:50], x[:60]])
    got = run(ids, mask)
    assert len(got) == 1 and "prompt(s) [1, 2]" in str(got[0].message)
    assert caught(lambda: generate_tokens(tiny(positional="alibi"), x[None], None, 2, greedy)) == [], "ALiBi: nothing cut"


# ------------------------------------------------------------------------------------------- through psannLM


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = psannLMDataPrep(default_corpus()[:20], vocab_size=300, max_length=32,
                               cache_dir=tmp_path_factory.mktemp("c"), progress=False)
    torch.manual_seed(0)
    m = psannLM(base="waveresnet", d_model=32, n_layers=2, n_heads=2)
    return m.fit(data, max_steps=3, batch_size=4, progress=False, peak_flops=1e12)


def test_generate_returns_n_texts_per_prompt(lm):
    one = lm.generate("Return the", max_new_tokens=8, seed=0, num_return_sequences=3)
    assert isinstance(one, list) and len(one) == 3 and all(isinstance(t, str) for t in one)
    assert one == lm.generate("Return the", max_new_tokens=8, seed=0, num_return_sequences=3)
    two = lm.generate(["Return the", "A"], max_new_tokens=8, seed=0, num_return_sequences=2)
    assert [len(g) for g in two] == [2, 2]
    assert sum(two, []) == lm.generate(["Return the", "Return the", "A", "A"], max_new_tokens=8, seed=0)
    assert isinstance(lm.generate("Return the", max_new_tokens=4, seed=0), str), "one prompt, one text: a string"
    with pytest.raises(ValueError, match="identical copies"):
        lm.generate("Return the", temperature=0, num_return_sequences=2)


def test_generate_returns_logprobs_per_token(lm):
    kw = dict(max_new_tokens=10, seed=3, top_k=40, temperature=0.9)
    text, lps = lm.generate("Return the", return_logprobs=True, **kw)
    assert text == lm.generate("Return the", **kw)
    ids, mask = lm._encode_prompts(["Return the"])
    new, lp = lm.generate_ids(ids, mask, return_logprobs=True, **kw)
    real = ~lp[0].isnan()
    assert lps == lp[0][real].tolist() and len(lps) == int(real.sum())
    want = recompute(lm.net, ids[0], new[0][real], SamplingConfig(top_k=40, temperature=0.9))
    assert max(abs(a - b) for a, b in zip(lps, want.tolist())) <= 1e-5
    texts, nested = lm.generate(["Return the", "A"], num_return_sequences=2, return_logprobs=True, **kw)
    assert [len(g) for g in texts] == [2, 2] and [len(g) for g in nested] == [2, 2]
    assert all(isinstance(x, float) for g in nested for row in g for x in row)


def test_stream_refuses_what_only_generate_does(lm):
    with pytest.raises(ValueError, match="stream yields the pieces of one text"):
        list(lm.stream("Return", num_return_sequences=2))
    with pytest.raises(ValueError, match="stream yields the pieces of one text"):
        list(lm.stream("Return", return_logprobs=True))
    assert "".join(lm.stream("Return", max_new_tokens=5, seed=1, num_return_sequences=1)) == \
        lm.generate("Return", max_new_tokens=5, seed=1)


def test_generate_warns_when_the_prompt_is_cut(lm):
    long = " ".join(["value"] * 200)
    assert len(lm.tokenizer.encode(long)) > lm.config.max_seq_len
    got = caught(lambda: lm.generate(long, max_new_tokens=2, temperature=0))
    assert len(got) == 1 and f"max_seq_len={lm.config.max_seq_len}" in str(got[0].message)
    assert caught(lambda: lm.generate("value value", max_new_tokens=2, temperature=0)) == []
