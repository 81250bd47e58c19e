"One saved directory, two loaders: psannLM.load and transformers (Auto classes, generate, pipeline)"
import json, logging, os, subprocess, sys, warnings
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # everything here is local: never ask the Hub
import pytest
import torch

transformers = pytest.importorskip("transformers")
from hypothesis import given, settings, strategies as st
from safetensors import safe_open
from transformers import (AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel,
                          PreTrainedTokenizerFast, pipeline)

from psann_lm.api import psannLM
from psann_lm.hf import REMOTE_CODE_FILE, PsannLMConfig, PsannLMForCausalLM, write_hf_files
from psann_lm.model import ModelConfig
from psann_lm.tokenizer import BACKENDS, train_tokenizer

ROOT = Path(__file__).resolve().parents[1]
transformers.utils.logging.disable_progress_bar()

# Unicode in and out of the vocabulary, runs of spaces, tabs, newlines, digits, NFKC-folded forms
TEXTS = ["the quick brown fox", "  leading and trailing  ",
         "runs    of   spaces\t\ttabs\n\n\nnewlines", "digits 0123456789 3.14159 1,000,000 ½ ²",
         "naïve café — 東京 Ελληνικά 🚀👍🏽",
         "ｆｕｌｌ ｗｉｄｔｈ ﬁ ligature", "", " ", "\n", "a\u3000b\u00a0c", "MIXED case Words", "fox" * 40,
         "unknown ǅ ᴥ ‽ ¿"]
CORPUS = [f"line {i}: the quick brown fox jumps over the lazy dog {i * 7} times; café — {i % 10}"
          for i in range(300)]
HF_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
            "generation_config.json", REMOTE_CODE_FILE]
SMALL = dict(d_model=32, n_layers=2, n_heads=4, max_seq_len=64)


@contextmanager
def complaints():
    "Python warnings and transformers' log records at WARNING or above, while the block runs."
    said, handler = [], logging.Handler(logging.WARNING)
    handler.emit = lambda record: said.append(record.getMessage())
    logging.getLogger("transformers").addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield said
    finally: logging.getLogger("transformers").removeHandler(handler)
    said.extend(str(w.message) for w in caught)


@pytest.fixture(scope="module")
def toks():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {b: train_tokenizer(CORPUS, b, vocab_size=500) for b in BACKENDS}


def saved(path, tok, base="waveresnet", seed=0, **opts) -> tuple[psannLM, Path]:
    "A small psannLM with `tok`, saved by psannLM.save and given transformers' files."
    torch.manual_seed(seed)
    lm = psannLM(base=base, vocab_size=tok.vocab_size, init_std=0.1, **SMALL, **opts)
    lm.tokenizer = tok
    return lm, write_hf_files(lm.save(path), lm.config, lm.tokenizer)


def random_ids(lm, shape, seed):
    "Token ids past the special ones, the same on every run."
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(3, lm.config.vocab_size, shape, generator=gen)


# ------------------------------------------------------------------------------------ tokenizers

@pytest.mark.parametrize("backend", BACKENDS)
def test_autotokenizer_gives_psann_ids(tmp_path, toks, backend):
    tok = toks[backend]
    _, d = saved(tmp_path / "m", tok)
    with complaints() as said: hf_tok = AutoTokenizer.from_pretrained(d, trust_remote_code=True)
    assert said == []
    assert isinstance(hf_tok, PreTrainedTokenizerFast)
    assert hf_tok(TEXTS)["input_ids"] == tok.encode_batch(TEXTS)
    assert [hf_tok.encode(t) for t in TEXTS] == [tok.encode(t) for t in TEXTS]
    specials = [hf_tok.bos_token_id, hf_tok.eos_token_id, hf_tok.pad_token_id, hf_tok.unk_token_id]
    assert specials == [tok.eos_id, tok.eos_id, tok.pad_id, tok.unk_id] and None not in specials[:3]
    ids = tok.encode_batch(TEXTS)
    assert [hf_tok.decode(i) for i in ids] == [tok.decode(i) for i in ids]
    assert hf_tok.padding_side == "left"


def tie(tok, a:list[int], b:list[int]) -> bool:
    "Whether Unigram segmentations `a` and `b` are the same pieces reordered, scoring the same."
    score = lambda ids: sum(tok.sp.get_score(i) for i in ids)
    return sorted(a) == sorted(b) and abs(score(a) - score(b)) < 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
def test_converted_tokenizer_on_arbitrary_text(toks, backend):
    "tokenizer.json gives psann_lm's ids on any text (but for sentencepiece Unigram's exact ties)."
    tok = toks[backend]
    fast = tok.to_tokenizers()
    pieces = [*"abcdefghijk ABC  \t\n0123456789éüß東京🚀ﬁｆ½²…—\u3000\u00a0.,;:!?'\"-", "fox", "the "]

    @settings(max_examples=150, deadline=None)
    @given(st.lists(st.sampled_from(pieces), max_size=30).map("".join))
    def same(text):
        mine, theirs = tok.encode(text), fast.encode(text, add_special_tokens=False).ids
        assert mine == theirs or (backend == "sentencepiece-unigram" and tie(tok, mine, theirs))
    same()


def test_sentencepiece_unigram_ties_are_the_only_difference(toks):
    "Equal-scoring orders of the same pieces fall to rounding (float32 in sentencepiece, 64 here)."
    tok = toks["sentencepiece-unigram"]
    mine = tok.encode("aaaa555")
    theirs = tok.to_tokenizers().encode("aaaa555", add_special_tokens=False).ids
    assert [tok.sp.id_to_piece(i) for i in mine[-2:]] == ["55", "5"] and mine[:-2] == theirs[:-2]
    assert mine != theirs and tie(tok, mine, theirs)


def test_autotokenizer_without_trust_remote_code(tmp_path, toks):
    "transformers 5 asks about the model's code first; refused (no terminal), it still loads."
    tok = toks["sentencepiece-unigram"]
    _, d = saved(tmp_path / "m", tok)
    code = ("import os; os.environ['HF_HUB_OFFLINE'] = '1'\n"
            "from transformers import AutoTokenizer\n"
            f"print('IDS', AutoTokenizer.from_pretrained({str(d)!r})({TEXTS!r})['input_ids'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.split("IDS ")[-1]) == tok.encode_batch(TEXTS)


# ------------------------------------------------------------------------------------ the model

OPTIONS = [dict(positional=p, tie_embeddings=t, mlp_activation=a)
           for p in ("rope", "alibi", "sinusoidal") for t in (True, False)
           for a in ("sine", "gelu")]


@pytest.mark.parametrize("base", ["respsann", "waveresnet"])
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_logits_and_greedy_equal_psann(tmp_path, toks, base, opts):
    lm, d = saved(tmp_path / "m", toks["bpe"], base, **opts)
    with complaints() as said:
        hf, info = AutoModelForCausalLM.from_pretrained(d, trust_remote_code=True,
                                                        output_loading_info=True)
    assert said == [], said                              # no missing, unexpected or new weights
    assert not any(info.values()), info
    assert isinstance(hf, PreTrainedModel) and isinstance(hf, PsannLMForCausalLM)
    ids = random_ids(lm, (3, 20), 1)
    mask = torch.ones_like(ids)
    mask[0, :5] = mask[1, :2] = 0                       # left padding
    labels = ids.masked_fill(mask == 0, -100)
    close = lambda a, b: torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    with torch.no_grad():
        for m in (None, mask):
            close(hf(ids, attention_mask=m).logits, lm.net(ids, attention_mask=m).logits)
        kw = dict(attention_mask=mask, labels=labels)
        close(hf(ids, **kw).loss, lm.net(ids, **kw).loss)
    new = hf.generate(ids, attention_mask=mask, max_new_tokens=16, do_sample=False)[:, 20:]
    mine = lm.generate_ids(ids, mask, max_new_tokens=16, do_sample=False)
    assert torch.equal(new, mine[:, :new.shape[1]])
    assert (mine[:, new.shape[1]:] == lm.tokenizer.pad_id).all()   # transformers stops: all ended


@pytest.mark.parametrize("base,layer", [("waveresnet", "LinearAttentionAndFullAttentionLayer"),
                                        ("respsann", "DynamicLayer")])
def test_generate_carries_psann_state_in_transformers_cache(tmp_path, toks, base, layer):
    lm, d = saved(tmp_path / "m", toks["bpe"], base)
    hf = AutoModelForCausalLM.from_pretrained(d, trust_remote_code=True)
    ids = random_ids(lm, (2, 12), 2)
    kw = dict(attention_mask=torch.ones_like(ids), do_sample=False)
    out = hf.generate(ids, max_new_tokens=20, return_dict_in_generate=True, **kw)
    cache = out.past_key_values
    assert type(cache).__name__ == "DynamicCache"
    assert {type(l).__name__ for l in cache.layers} == {layer}
    if base == "waveresnet":                  # the conv state: the last (k-1)·δ normalised inputs
        shapes = [tuple(l.conv_states[0].shape) for l in cache.layers]
        assert shapes == [(2, 2 * lm.config.dilation(i), 32) for i in range(2)]
    assert torch.equal(out.sequences, hf.generate(ids, max_new_tokens=20, use_cache=False, **kw))
    mine = lm.generate_ids(ids, max_new_tokens=20, do_sample=False)
    assert torch.equal(out.sequences[:, 12:], mine[:, :out.sequences.shape[1] - 12])
    beams = [hf.generate(ids, max_new_tokens=10, num_beams=3, use_cache=c, **kw)
             for c in (True, False)]
    assert torch.equal(beams[0], beams[1])               # reorder_cache moves the conv state too
    if base == "respsann":                    # a lazy DynamicCache(): plain layers suffice
        lazy = transformers.DynamicCache()
        with torch.no_grad():
            torch.testing.assert_close(hf(ids, past_key_values=lazy).logits, lm.net(ids).logits,
                                       atol=1e-5, rtol=0)
        assert lazy.get_seq_length() == 12 and len(lazy.layers) == 2


def test_pipeline_runs_and_matches_psann(tmp_path, toks):
    lm, d = saved(tmp_path / "m", toks["bpe"])
    pipe = pipeline("text-generation", model=str(d), trust_remote_code=True)
    said = pipe("the quick brown", max_new_tokens=12, do_sample=False, return_full_text=False)
    mine = lm.generate("the quick brown", max_new_tokens=12, temperature=0)
    assert said[0]["generated_text"] == mine
    full = pipe("the quick brown", max_new_tokens=5, do_sample=False)[0]["generated_text"]
    assert full.startswith("the quick brown")


# ------------------------------------------------------------------------------------ the layout

def test_layout_is_a_hub_repo_and_psann_still_loads(tmp_path, toks):
    tok = toks["sentencepiece-bpe"]
    lm, d = saved(tmp_path / "m", tok)
    files = sorted(["config.json", "model.safetensors", "tokenizer", *HF_FILES])
    assert sorted(p.name for p in d.iterdir()) == files
    meta = json.loads((d / "config.json").read_text())
    assert {"format", "model", "tokenizer", "training"} <= set(meta)          # psannLM.load's keys
    assert meta["model_type"] == "psann_lm" and meta["architectures"] == ["PsannLMForCausalLM"]
    assert meta["auto_map"] == {"AutoConfig": "modeling_psann_lm.PsannLMConfig",
                                "AutoModelForCausalLM": "modeling_psann_lm.PsannLMForCausalLM"}
    assert [meta["eos_token_id"], meta["pad_token_id"]] == [tok.eos_id, tok.pad_id]
    remote = (d / REMOTE_CODE_FILE).read_text()
    assert "from psann_lm.hf import PsannLMConfig, PsannLMForCausalLM" in remote
    generation = json.loads((d / "generation_config.json").read_text())
    assert generation["eos_token_id"] == lm.tokenizer.eos_id
    back = psannLM.load(d)
    ids = random_ids(lm, (2, 10), 3)
    with torch.no_grad(): assert torch.equal(back.net(ids).logits, lm.net(ids).logits)
    assert back.tokenizer.fingerprint == lm.tokenizer.fingerprint
    config = AutoConfig.from_pretrained(d, trust_remote_code=True)
    assert isinstance(config, PsannLMConfig) and config.model_config == lm.config


def test_save_pretrained_writes_psann_layout(tmp_path, toks):
    "push_to_hub from transformers uploads psann_lm's layout: psann's names, no copied source."
    lm, d = saved(tmp_path / "m", toks["bpe"], tie_embeddings=False)
    hf = AutoModelForCausalLM.from_pretrained(d, trust_remote_code=True)
    again = tmp_path / "again"
    hf.save_pretrained(again, max_shard_size="50GB")                  # as push_to_hub calls it
    assert sorted(p.name for p in again.glob("*.py")) == [REMOTE_CODE_FILE]
    names = lambda path: sorted(safe_open(str(path / "model.safetensors"), "pt").keys())
    assert names(again) == names(d)
    ids = random_ids(lm, (2, 10), 4)
    with torch.no_grad():
        assert torch.equal(psannLM.load(again).net(ids).logits, lm.net(ids).logits)
        reread = AutoModelForCausalLM.from_pretrained(again, trust_remote_code=True)
        assert torch.equal(reread(ids).logits, lm.net(ids).logits)
    with pytest.raises(ValueError, match="psann_lm writes one file"):
        hf.save_pretrained(tmp_path / "x", max_shard_size="1KB")
    with pytest.raises(ValueError, match=r"cannot take \['push_to_hub'\]"):
        hf.save_pretrained(tmp_path / "x", push_to_hub=True)



def as_saved_before(d):
    "Directory `d` as psannLM.save wrote it before transformers' files: those removed, config.json cut back."
    for name in HF_FILES: (d / name).unlink(missing_ok=True)
    meta = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({k: meta[k] for k in ("format", "model", "tokenizer", "training")}))
    return d


def test_older_directory(tmp_path, toks):
    "As save wrote it before: psannLM.load reads it, transformers says why not, write_hf_files adds"
    tok = toks["wordpiece"]
    lm = psannLM(base="respsann", vocab_size=tok.vocab_size, **SMALL)
    lm.tokenizer = tok
    old = as_saved_before(lm.save(tmp_path / "old"))
    ids = random_ids(lm, (2, 10), 5)
    with torch.no_grad(): assert torch.equal(psannLM.load(old).net(ids).logits, lm.net(ids).logits)
    with pytest.raises(ValueError, match="model_type"):
        AutoModelForCausalLM.from_pretrained(old, trust_remote_code=True)
    write_hf_files(old)                                  # reads the config and tokenizer there
    hf = AutoModelForCausalLM.from_pretrained(old, trust_remote_code=True)
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, lm.net(ids).logits, atol=1e-5, rtol=0)
    hf_tok = AutoTokenizer.from_pretrained(old, trust_remote_code=True)
    assert hf_tok(TEXTS)["input_ids"] == tok.encode_batch(TEXTS)


def test_bad_input(tmp_path, toks):
    lm, d = saved(tmp_path / "m", toks["bpe"])
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        write_hf_files(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        write_hf_files(tmp_path / "plain")
    with pytest.raises(ValueError, match="model_config differs"):
        write_hf_files(d, ModelConfig(vocab_size=lm.config.vocab_size))
    with pytest.raises(ValueError, match="is not the one saved in"):
        write_hf_files(d, tokenizer=toks["unigram"])
    assert {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()} == before   # untouched
    with pytest.raises(ValueError, match="disagrees with the model section"):
        PsannLMConfig(model=lm.config.to_dict(), vocab_size=7)
    hf = AutoModelForCausalLM.from_pretrained(d, trust_remote_code=True)
    ids = random_ids(lm, (1, 8), 6)
    with pytest.raises(ValueError, match=r"cannot take \['output_hidden_states'\]"):
        hf(ids, output_hidden_states=True)
    with pytest.raises(ValueError, match=r"cannot take \['position_ids'\]"):
        hf(ids, position_ids=torch.arange(8)[None])
    static = transformers.StaticCache(config=hf.config, max_cache_len=32)
    for cache in (static, transformers.DynamicCache()):   # preallocated; no room for the conv state
        with pytest.raises(ValueError, match="decodes with DynamicCache"):
            hf(ids, past_key_values=cache)


def test_files_are_written_without_transformers(tmp_path, toks):
    "transformers is an extra: write_hf_files works without it; the classes say what to install."
    tok = toks["bpe"]
    lm = psannLM(base="waveresnet", vocab_size=tok.vocab_size, **SMALL)
    lm.tokenizer = tok
    d = as_saved_before(lm.save(tmp_path / "m"))
    code = ("import sys; sys.modules['transformers'] = None\n"
            "from psann_lm.hf import write_hf_files, PsannLMConfig\n"
            f"write_hf_files({str(d)!r})\n"
            "try: PsannLMConfig()\nexcept ImportError as e: print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "needs transformers 5: pip install 'psann_lm[eval]'" in out.stdout
    assert json.loads((d / "config.json").read_text())["model_type"] == "psann_lm"
    hf_tok = AutoTokenizer.from_pretrained(d, trust_remote_code=True)
    assert hf_tok(TEXTS)["input_ids"] == tok.encode_batch(TEXTS)
