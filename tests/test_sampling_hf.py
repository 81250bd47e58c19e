"""Sampling against transformers itself, and stop strings in `stream`.

`top_k`, `top_p` and `min_p` keep exactly the tokens Hugging Face's `TopKLogitsWarper`,
`TopPLogitsWarper` and `MinPLogitsWarper` keep: on integer logits full of ties, and at p values
placed on the cumulative-mass boundaries. `stream` with stop strings yields exactly the text
`generate` returns with the same seed."""
import warnings

import pytest
import torch

from psann_lm.generation import SamplingConfig, min_p, top_k, top_p

hf = pytest.importorskip("transformers.generation.logits_process")   # in the bench extra

ROWS = 400     # random batches per property (each 1-3 rows of 2-12 tokens)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    "Tiny tensors: one thread is fastest, and on a shared machine contention makes calls crawl."
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def batches(seed: int, n: int = ROWS):
    "`n` random (B, V) batches of small integer logits (many ties), some -inf as filters leave."
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        B = int(torch.randint(1, 4, (1,), generator=g))
        V = int(torch.randint(2, 13, (1,), generator=g))
        x = torch.randint(-4, 5, (B, V), generator=g).float()
        gone = torch.rand(B, V, generator=g) < 0.15
        gone[:, 0] = False                                        # every row keeps a finite logit
        yield g, x.masked_fill(gone, float("-inf"))


def kept(logits): return torch.isfinite(logits)


def same(ours, theirs, what, x):
    "Identical processed logits: the same tokens kept and untouched, the others -inf."
    assert torch.equal(kept(ours), kept(theirs)), \
        f"{what} on {x.tolist()}: kept {kept(ours).tolist()}, transformers {kept(theirs).tolist()}"
    assert torch.equal(ours, theirs), f"{what} on {x.tolist()}: kept logits must stay as they are"


def test_top_k_keeps_what_transformers_keeps():
    for g, x in batches(0):
        for k in range(1, x.shape[1] + 2):
            same(top_k(x, k), hf.TopKLogitsWarper(k)(None, x), f"top_k={k}", x)


def test_top_k_keeps_every_tie_with_the_kth():
    x = torch.tensor([[3.0, 1.0, 1.0, 1.0, 0.0]])
    assert kept(top_k(x, 2)).tolist() == [[True, True, True, True, False]]
    assert kept(top_k(torch.zeros(1, 6), 1)).all()


def boundaries(x):
    "p values exactly on row 0's cumulative masses (float32 and float64), and their neighbours."
    probs = x[0].softmax(-1)
    down = probs.sort(descending=True).values.cumsum(-1)        # mass of the j most likely tokens
    exact = x[0].double().softmax(-1).sort(descending=True).values.cumsum(-1)
    up = probs.sort().values.cumsum(-1)                 # the j least likely, summed as HF does
    edges = {1 - u for u in up.tolist()}                        # where HF's comparison flips
    near = {q + d for q in edges for d in (0, -5e-7, 5e-7, -3e-8, 3e-8)}
    return sorted(p for p in set(down.tolist()) | set(exact.tolist()) | near if 0 < p < 1)


def test_top_p_keeps_what_transformers_keeps():
    for g, x in batches(1):
        for p in [float(torch.rand(1, generator=g)) for _ in range(3)] + boundaries(x):
            same(top_p(x, p), hf.TopPLogitsWarper(p)(None, x), f"top_p={p!r}", x)


def test_top_p_keeps_the_crossing_token_just_past_a_boundary():
    "Four tokens of 1/4: two reach p = 0.5; a hair over 0.5 needs a third (no tolerance drops it)."
    even = torch.zeros(1, 4)
    for p, n in ((0.5, 2), (0.5 + 5e-7, 3)):
        assert kept(top_p(even, p)).sum() == n == kept(hf.TopPLogitsWarper(p)(None, even)).sum()


def test_min_p_keeps_what_transformers_keeps():
    for g, x in batches(2):
        probs = x.softmax(-1)
        ratios = (probs[0] / probs[0].max()).tolist()   # m exactly at a token's ratio to the top
        for m in [float(torch.rand(1, generator=g)) for _ in range(3)] + ratios:
            same(min_p(x, m), hf.MinPLogitsWarper(m)(None, x), f"min_p={m!r}", x)


def test_sampling_config_matches_transformers_processors_in_order():
    "Repetition penalty → temperature → top-k → top-p → min-p gives transformers' logits exactly."
    g = torch.Generator().manual_seed(3)
    draw = lambda lo, hi: float(torch.rand(1, generator=g)) * (hi - lo) + lo
    for _, x in batches(4, 200):
        B, V = x.shape
        x = x.masked_fill(torch.isinf(x), 0.0)                   # model logits are finite
        seen = torch.randint(0, V, (B, 3), generator=g)
        t = [0.5, 1.0, 2.0][int(torch.randint(0, 3, (1,), generator=g))]
        k = int(torch.randint(1, V + 1, (1,), generator=g))
        p, m = draw(0.01, 0.99), draw(0.01, 0.5)
        cfg = SamplingConfig(temperature=t, top_k=k, top_p=p, min_p=m, repetition_penalty=1.3)
        theirs = x.clone()
        for proc in (hf.RepetitionPenaltyLogitsProcessor(1.3), hf.TemperatureLogitsWarper(t),
                     hf.TopKLogitsWarper(k), hf.TopPLogitsWarper(p), hf.MinPLogitsWarper(m)):
            theirs = proc(seen, theirs)
        same(cfg.process(x, seen), theirs, f"t={t} k={k} p={p} m={m}", x)


# ---------------------------------------------------------------- stop strings: stream ≡ generate

@pytest.fixture(scope="module")
def lm():
    "An untrained small model with a byte-level tokenizer: it samples line breaks, broken bytes."
    from psann_lm.api import psannLM
    from psann_lm.dataprep import default_corpus
    from psann_lm.tokenizer import train_tokenizer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = train_tokenizer(default_corpus()[:4], backend="bpe", vocab_size=300)
    torch.manual_seed(0)                                 # the same weights whatever ran before
    model = psannLM(base="respsann", d_model=16, n_layers=1, n_heads=2, vocab_size=tok.vocab_size,
                    max_seq_len=64)
    model.tokenizer = tok
    return model


def test_stream_with_a_stop_string_yields_what_generate_returns(lm):
    cut = 0
    for seed in range(20):
        free = lm.generate("Return the", max_new_tokens=40, seed=seed)
        text = lm.generate("Return the", max_new_tokens=40, seed=seed, stop="\n")
        assert text == free.split("\n")[0]
        assert "".join(lm.stream("Return the", max_new_tokens=40, seed=seed, stop="\n")) == text
        cut += text != free
    assert cut >= 2, "the stop string must have ended some of the samples early"


def test_stream_holds_back_a_stop_string_that_spans_tokens(lm):
    "A stop string across two tokens: no piece streams past where generate cuts."
    tried, kw = 0, dict(max_new_tokens=30, eos_token_id=[])
    for seed in range(12):
        ids = lm.generate_ids(*lm._encode_prompts(["The"]), seed=seed, **kw)[0].tolist()
        pieces = [lm.tokenizer.decode([i]) for i in ids]
        pairs = [(a, b) for a, b in zip(pieces, pieces[1:])
                 if a and b and (a + b).isprintable() and "\ufffd" not in a + b]
        if not pairs: continue
        a, b = pairs[len(pairs) // 2]
        stops = [a[-2:] + b[:2], "\n\n"]
        free = lm.generate("The", seed=seed, **kw)
        want = lm.generate("The", seed=seed, stop=stops, **kw)
        assert len(want) < len(free) and not any(s in want for s in stops)
        assert "".join(lm.stream("The", seed=seed, stop=stops, **kw)) == want
        tried += 1
    assert tried >= 3


def test_stream_checks_its_stop_strings(lm):
    with pytest.raises(ValueError, match="each stop string must be non-empty"):
        list(lm.stream("The", stop=""))
    with pytest.raises(ValueError, match="a list of strings or None, got 5"):
        list(lm.stream("The", stop=5))
