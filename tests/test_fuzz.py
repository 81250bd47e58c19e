"""Property-based tests (hypothesis): tokenizers on arbitrary Unicode, packing window counts for any stream length and
max_length, and every sampling processor keeping a valid distribution."""
import math
import warnings
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from psann_lm.dataprep import DocumentWindows, PackedWindows, default_corpus
from psann_lm.generation import SamplingConfig, min_p, repetition_penalty, temperature, top_k, top_p
from psann_lm.tokenizer import BACKENDS, load_tokenizer, train_tokenizer

RUN = Counter()      # examples run per property, printed when the module ends


def fuzz(n: int):
    "hypothesis settings for a property: `n` examples, no deadline (the machine is shared), no example database."
    return settings(max_examples=n, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    print(f"\nhypothesis examples run: {sum(RUN.values())} ({dict(RUN)})")


# ---------------------------------------------------------------- tokenizers

@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    "One tokenizer per backend, trained once on a small corpus, and its save/load copy."
    texts = default_corpus()[:12]
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for backend in BACKENDS:
            tok = train_tokenizer(texts, backend=backend, vocab_size=500)
            out[backend] = (tok, load_tokenizer(tok.save(tmp_path_factory.mktemp(backend))))
    return out


@fuzz(400)
@given(text=st.text())
def test_byte_level_bpe_round_trips_any_unicode(tokenizers, text):
    RUN["bpe round trip"] += 1
    tok, _ = tokenizers["bpe"]
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize("backend", BACKENDS)
@fuzz(60)
@given(texts=st.lists(st.text(), min_size=1, max_size=3))
def test_every_backend_encodes_any_unicode_into_its_vocabulary(tokenizers, backend, texts):
    "What every backend promises, lossy ones included: valid ids, no special ids out of plain text, a decodable result,"
    "batches equal to single calls, and a saved copy (same fingerprint) that tokenizes identically."
    RUN[f"{backend} interface"] += 1
    assume(not any("<|" in t for t in texts))          # the special tokens' spelling is matched as such
    tok, loaded = tokenizers[backend]
    batch = tok.encode_batch(texts)
    assert batch == [tok.encode(t) for t in texts] == loaded.encode_batch(texts)
    specials = {tok.pad_id, tok.bos_id, tok.eos_id} - {None}
    for ids in batch:
        assert all(isinstance(i, int) and 0 <= i < tok.vocab_size for i in ids)
        assert not specials & set(ids)
        assert isinstance(tok.decode(ids), str) and tok.decode(ids) == loaded.decode(ids)
    assert loaded.fingerprint == tok.fingerprint


# ---------------------------------------------------------------- packing

class ArrayStream:
    "An in-memory token stream with the interface the window datasets read (len, slice, doc_starts)."
    def __init__(self, tokens, starts): self.tokens, self.starts = np.asarray(tokens, np.int64), np.asarray(starts, np.int64)
    def __len__(self): return len(self.tokens)
    def slice(self, a, b): return self.tokens[a:b].copy()
    def doc_starts(self): return self.starts


PAD = -7


def real(labels) -> list:
    labels = labels.tolist()
    return labels[:labels.index(-100)] if -100 in labels else labels


@fuzz(300)
@given(n=st.integers(2, 4000), L=st.integers(2, 700), data=st.data())
def test_packed_window_count_and_coverage(n, L, data):
    "Windows of L+1 tokens at stride L: as many as fit in the stream, else one padded window; the uncovered tail is shorter than L."
    RUN["packed windows"] += 1
    stream = ArrayStream(np.arange(n) + 1, [0])
    ds = PackedWindows(stream, L, PAD)
    fit = sum(1 for i in range(n) if i * L + L + 1 <= n)
    assert len(ds) == (fit or 1)
    i = data.draw(st.integers(0, len(ds) - 1))
    item = ds[i]
    assert item["input_ids"].shape == (L,) and item["labels"].shape == (L + 1,)
    want = stream.tokens[i * L: i * L + L + 1].tolist()
    assert real(item["labels"]) == want and item["input_ids"].tolist()[:len(want) - 1] == want[:-1]
    if fit:
        assert "attention_mask" not in item and n - 1 - fit * L < L, "every target but a tail shorter than one window is trained on"
    else:
        assert item["attention_mask"].tolist() == [1] * n + [0] * (L - n) and item["input_ids"].tolist()[n:] == [PAD] * (L - n)
    with pytest.raises(IndexError): ds[len(ds)]


@fuzz(200)
@given(lengths=st.lists(st.integers(1, 300), min_size=1, max_size=12), L=st.integers(2, 120))
def test_document_window_count_and_coverage(lengths, L):
    "Per-document windows: each document of m tokens gets max(1, ceil((m - 1) / L)) windows, which rebuild it exactly."
    RUN["document windows"] += 1
    starts = np.cumsum([0] + lengths[:-1])
    stream = ArrayStream(np.arange(sum(lengths)) + 1, starts)
    ds = DocumentWindows(stream, L, PAD)
    per_doc = [max(1, math.ceil((m - 1) / L)) for m in lengths]
    assert len(ds) == sum(per_doc)
    k = 0
    for s, m, w in zip(starts, lengths, per_doc):
        pieces = [real(ds[k + j]["labels"]) for j in range(w)]
        assert pieces[0][:1] == [s + 1] and all(len(p) <= L + 1 for p in pieces)
        rebuilt = pieces[0] + [t for p in pieces[1:] for t in p[1:]]         # consecutive windows share one token
        assert rebuilt == list(range(s + 1, s + m + 1)), "windows must rebuild the document, never crossing into the next"
        k += w


# ---------------------------------------------------------------- sampling

def logit_rows(min_v=2, max_v=40):
    "(B, V) float32 logits with ties, extremes and some -inf entries (as earlier processors leave), every row with a finite one."
    shape = st.tuples(st.integers(1, 3), st.integers(min_v, max_v))
    values = st.one_of(st.floats(-30, 30, width=32), st.sampled_from([0.0, 1.0, -1.0, 30.0]), st.just(float("-inf")))
    def fix(a):
        a[:, 0] = np.where(np.isfinite(a[:, 0]), a[:, 0], 0.0)
        return torch.from_numpy(a)
    return shape.flatmap(lambda s: arrays(np.float32, s, elements=values)).map(fix)


def assert_distribution(logits):
    "softmax(logits) is a distribution: finite, non-negative, summing to 1, with at least one token."
    p = logits.double().softmax(-1)
    assert torch.isfinite(p).all() and (p >= 0).all()
    assert torch.allclose(p.sum(-1), torch.ones(p.shape[0], dtype=torch.double), atol=1e-6)
    assert (torch.isfinite(logits).sum(-1) >= 1).all()
    return p


@fuzz(200)
@given(logits=logit_rows(), penalty=st.floats(0.05, 20), data=st.data())
def test_repetition_penalty_keeps_a_distribution(logits, penalty, data):
    RUN["repetition_penalty"] += 1
    B, V = logits.shape
    seen = torch.tensor(data.draw(st.lists(st.lists(st.integers(0, V - 1), min_size=4, max_size=4), min_size=B, max_size=B)))
    out = repetition_penalty(logits, seen, penalty)
    assert_distribution(out)
    unseen = torch.ones_like(logits, dtype=torch.bool).scatter(1, seen, False)
    assert torch.equal(out[unseen], logits[unseen]), "tokens not seen are untouched"
    if penalty >= 1: assert (out[~unseen] <= logits[~unseen]).all(), "a penalty >= 1 never makes a seen token likelier"


@fuzz(200)
@given(logits=logit_rows(), t=st.floats(0.01, 100))
def test_temperature_keeps_a_distribution(logits, t):
    RUN["temperature"] += 1
    out = temperature(logits, t)
    assert_distribution(out)
    assert torch.equal(out.argmax(-1), logits.argmax(-1))


@fuzz(200)
@given(logits=logit_rows(), data=st.data())
def test_top_k_keeps_k_and_their_ties(logits, data):
    "Hugging Face's rule: every token whose logit reaches the k-th largest (k, more on ties)."
    RUN["top_k"] += 1
    k = data.draw(st.integers(1, logits.shape[1] + 2))
    out = top_k(logits, k)
    assert_distribution(out)
    kept, finite = torch.isfinite(out), torch.isfinite(logits)
    assert (kept.sum(-1) >= finite.sum(-1).clamp(max=k)).all(), "at least k candidates"
    assert torch.equal(out[kept], logits[kept]), "kept logits are untouched"
    for row, keep in zip(logits, kept):                    # nothing dropped reaches a kept one
        if (~keep).any() and keep.any(): assert row[~keep].max() < row[keep].min()
        if keep.sum() > k: assert (row == row[keep].min()).sum() >= 2, "over k only by a tie"


@fuzz(200)
@given(logits=logit_rows(), p=st.floats(1e-6, 1.0))
def test_top_p_keeps_at_least_p(logits, p):
    RUN["top_p"] += 1
    out = top_p(logits, p)
    assert_distribution(out)
    probs, kept = logits.double().softmax(-1), torch.isfinite(out)
    assert ((probs * kept).sum(-1) >= p - 1e-5).all(), "the kept tokens hold at least p of the mass"
    for row, keep in zip(probs, kept):                     # and it is the smallest such set: without its least likely token it falls short
        if keep.sum() > 1: assert (row * keep).sum() - row[keep].min() < p + 1e-5


@fuzz(200)
@given(logits=logit_rows(), m=st.floats(1e-6, 1.0))
def test_min_p_keeps_the_likely_tokens(logits, m):
    RUN["min_p"] += 1
    out = min_p(logits, m)
    assert_distribution(out)
    probs, kept = logits.softmax(-1), torch.isfinite(out)
    assert torch.equal(kept, probs >= m * probs.max(-1, keepdim=True).values)
    assert kept.gather(1, logits.argmax(-1, keepdim=True)).all(), "the most likely token is always kept"


@fuzz(300)
@given(logits=logit_rows(), t=st.one_of(st.just(0.0), st.floats(0.05, 5)), k=st.one_of(st.none(), st.integers(1, 45)),
       p=st.one_of(st.none(), st.floats(0.01, 1.0)), m=st.one_of(st.none(), st.floats(0.001, 1.0)),
       penalty=st.floats(0.5, 3), data=st.data())
def test_sampling_config_process_keeps_a_distribution(logits, t, k, p, m, penalty, data):
    "The composition (repetition penalty → temperature → top-k → top-p → min-p) keeps a distribution and each bound, and samples from it."
    RUN["SamplingConfig.process"] += 1
    B, V = logits.shape
    logits[:, 0] = logits[:, 0].clamp(min=-30)               # a finite candidate in every row
    seen = torch.tensor(data.draw(st.lists(st.lists(st.integers(0, V - 1), min_size=3, max_size=3), min_size=B, max_size=B)))
    cfg = SamplingConfig(temperature=t, top_k=k, top_p=p, min_p=m, repetition_penalty=penalty)
    out = cfg.process(logits, seen)
    assert_distribution(out)
    base = repetition_penalty(logits, seen, penalty)
    if cfg.greedy:
        assert torch.equal(cfg.choose(logits, seen), base.argmax(-1))
        return
    kept = torch.isfinite(out)
    if k is not None:                                        # within top-k's set (k largest, ties)
        scaled = temperature(base, t)
        kth = scaled.topk(min(k, V), dim=-1).values[:, -1:]
        assert not (kept & (scaled < kth)).any()
    if p is not None and m is None:
        before_p = top_k(temperature(base, t), k).double().softmax(-1)      # the distribution top-p was given
        assert ((before_p * kept).sum(-1) >= p - 1e-5).all()
    picks = cfg.choose(logits, seen, torch.Generator().manual_seed(data.draw(st.integers(0, 2**31))))
    assert kept.gather(1, picks[:, None]).all(), "sampling picks only kept tokens"
