"""psann_lm under lm-evaluation-harness, on tasks built here (nothing from the hub).

A multiple-choice task reading a local JSON-lines file and a `loglikelihood_rolling` (perplexity)
task run through the harness three ways: `psannLM.evaluate_harness`, the `psann-lm-eval` command,
and the harness's own `lm_eval --model hf ... trust_remote_code=True` on a saved model. Every
log-likelihood the harness reports equals psann_lm's own `loglikelihood` /
`loglikelihood_rolling` to 1e-4, and so do lm-eval's own HFLM scoring code run over psann's
network and a brute-force reference (one unbatched forward pass per scored token), on contexts
longer than `max_seq_len`."""
import contextlib, importlib.util, io, json, math, os, random, re, shutil, subprocess, sys, warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("lm_eval")   # the eval extra

from psann_lm import psannLM, psannLMDataPrep
from psann_lm.evaluation import (HARNESS_NAME, encode_pair, eval_cli, rolling_windows,
                                 score_continuations)

L = 32          # the models' max_seq_len: short, so that long contexts are easy to make
BIN = Path(sys.executable).parent

MC_DOCS = [dict(question="The cat sat on the", choices=["mat.", "tree.", "log."], answer=0),
           dict(question="A bird flew over the", choices=["tree and sang", "mat", "dog"], answer=0),
           dict(question="The dog sat on the", choices=["log.", "song."], answer=0),
           dict(question="", choices=["The cat", "Sang the"], answer=0),           # empty context
           dict(question="The cat sat on the mat. " * 8 + "The dog sat on the",   # > max_seq_len
                choices=["log.", "mat."], answer=0)]
PPL_DOCS = ["The cat sat on the mat.", "A bird flew over the tree and sang a song. " * 6,
            "The dog sat on the log. The cat sat on the mat. " * 9]


@pytest.fixture(scope="module", autouse=True)
def offline(tmp_path_factory):
    "No network, a private datasets cache, one thread (a shared machine)."
    cache = tmp_path_factory.mktemp("hf_home")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in dict(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                         HF_HOME=str(cache), HF_DATASETS_CACHE=str(cache / "datasets")).items():
            mp.setenv(k, v)
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model():
    "A tiny WaveResNet trained for a few seconds on the tasks' kind of text."
    texts = ["The cat sat on the mat. The dog sat on the log. " * 12,
             "A bird flew over the tree and sang a song. " * 12] * 8
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = psannLMDataPrep(texts, vocab_size=300, max_length=L, progress=False)
    m = psannLM(base="waveresnet", d_model=32, n_layers=2, n_heads=2)
    return m.fit(data, max_steps=40, batch_size=8, lr=3e-3, progress=False)


def write_task(d: Path, name: str, docs: list, body: str) -> None:
    (d / f"{name}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in docs))
    head = (f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
            f"    test: {d / (name + '.jsonl')}\ntest_split: test\n")
    (d / f"{name}.yaml").write_text(head + body)


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    "A folder with a multiple-choice task (psann_mc) and a perplexity task (psann_ppl)."
    d = tmp_path_factory.mktemp("tasks")
    write_task(d, "psann_mc", MC_DOCS,
               'output_type: multiple_choice\ndoc_to_text: "{{question}}"\n'
               'doc_to_choice: "{{choices}}"\ndoc_to_target: "{{answer}}"\n'
               'metric_list:\n  - metric: acc\n')
    write_task(d, "psann_ppl", [dict(text=t) for t in PPL_DOCS],
               'output_type: loglikelihood_rolling\ndoc_to_text: ""\ndoc_to_target: "{{text}}"\n'
               'metric_list:\n  - metric: word_perplexity\n  - metric: bits_per_byte\n')
    return d


def quiet(fn, *args, **kwargs):
    with contextlib.redirect_stderr(io.StringIO()):
        return fn(*args, **kwargs)


@pytest.fixture(scope="module")
def results(model, tasks):
    return quiet(model.evaluate_harness, ["psann_mc", "psann_ppl"], include_path=tasks,
                 include_defaults=False, log_samples=True, batch_size=3)


def mc_pairs(doc):
    "The requests a multiple-choice document makes: the question, then ' ' + each choice."
    return [(doc["question"], " " + c) for c in doc["choices"]]


def check_mc(model, samples):
    "The harness's per-choice log-likelihoods are psann_lm's own; returns the accuracy they imply."
    right = 0
    for s in samples:
        doc = MC_DOCS[s["doc_id"]]
        assert [tuple(a) for a in s["arguments"]] == mc_pairs(doc)
        ours = [r.logprob for r in model.loglikelihood(mc_pairs(doc))]
        theirs = [float(r[0][0]) for r in s["resps"]]      # lm_eval's files hold text
        assert theirs == pytest.approx(ours, abs=1e-4)
        right += max(range(len(ours)), key=ours.__getitem__) == doc["answer"]
    assert len(samples) == len(MC_DOCS)
    return right / len(MC_DOCS)


def check_ppl(model, samples):
    "The harness's per-document log-likelihoods are psann_lm's rolling ones; returns the total."
    total = 0.0
    for s in samples:
        text = PPL_DOCS[s["doc_id"]]
        ours, = model.loglikelihood_rolling([text])
        assert float(s["resps"][0][0]) == pytest.approx(ours, abs=1e-4)
        total += ours
    assert len(samples) == len(PPL_DOCS)
    return total


def test_multiple_choice_log_likelihoods_are_psanns_own(model, results):
    acc = check_mc(model, results["samples"]["psann_mc"])
    assert results["results"]["psann_mc"]["acc,none"] == pytest.approx(acc)
    assert acc > 0.5                                # the trained model knows the cat sat on the mat


def test_rolling_log_likelihoods_are_psanns_own(model, results):
    total = check_ppl(model, results["samples"]["psann_ppl"])
    words = sum(len(re.split(r"\s+", t)) for t in PPL_DOCS)      # lm-eval's word count
    ppl = results["results"]["psann_ppl"]["word_perplexity,none"]
    assert ppl == pytest.approx(math.exp(-total / words), rel=1e-4)
    long_doc = model.tokenizer.encode(PPL_DOCS[2])
    assert len(rolling_windows(long_doc, 0, L)) > 3    # the long document spans several windows


def brute_force(net, context, continuation):
    "Reference: one unbatched forward pass per continuation token, on the window before it."
    seq = (context + continuation)[-(L + 1):]
    total, greedy = 0.0, True
    with torch.no_grad():
        for p in range(len(seq) - len(continuation), len(seq)):
            logp = F.log_softmax(net.eval()(torch.tensor([seq[:p]])).logits[0, -1].float(), -1)
            total += logp[seq[p]].item()
            greedy &= int(logp.argmax()) == seq[p]
    return total, greedy


@pytest.mark.parametrize("base,positional", [("waveresnet", "rope"), ("respsann", "alibi"),
                                             ("respsann", "sinusoidal")])
def test_long_contexts_against_brute_force(model, base, positional):
    tok = model.tokenizer
    torch.manual_seed(1)
    m = psannLM(base=base, positional=positional, d_model=32, n_layers=2, n_heads=2,
                vocab_size=tok.vocab_size, max_seq_len=L) if base != "waveresnet" else model
    rng = random.Random(0)
    reqs = [([rng.randrange(tok.vocab_size) for _ in range(rng.randint(1, 3 * L))],
             [rng.randrange(tok.vocab_size) for _ in range(rng.randint(1, L))]) for _ in range(10)]
    reqs.append(([5] * (3 * L), [7] * L))                          # the longest continuation
    assert sum(len(c) + len(x) > L + 1 for c, x in reqs) >= 5      # truncated, most of them
    for bs in (1, 4, 16):
        got = score_continuations(m.net, reqs, batch_size=bs, pad_id=tok.pad_id)
        for (c, x), g in zip(reqs, got):
            ref = brute_force(m.net, c, x)
            assert g.logprob == pytest.approx(ref[0], abs=1e-4) and g.is_greedy == ref[1]


def test_long_text_context_against_brute_force(model):
    tok = model.tokenizer
    context, continuation = MC_DOCS[4]["question"], " log."
    c, x = encode_pair(tok, context, continuation, tok.eos_id)
    assert len(c) + len(x) > L + 1
    got, = model.loglikelihood([(context, continuation)])
    ref = brute_force(model.net, c, x)
    assert got.logprob == pytest.approx(ref[0], abs=1e-4) and got.is_greedy == ref[1]
    rolled, = model.loglikelihood_rolling([PPL_DOCS[2]])
    ids = tok.encode(PPL_DOCS[2])
    assert rolled == pytest.approx(sum(brute_force(model.net, c, x)[0]
                                       for c, x in rolling_windows(ids, tok.eos_id, L)), abs=1e-4)


def test_rolling_windows_are_lm_evals():
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
    for n in range(40):
        for max_len in (1, 2, 5, 8, 33):
            ids = list(range(1, n + 1))
            ref = [make_disjoint_window(w) for w in get_rolling_token_windows(ids, 0, max_len, 1)]
            assert rolling_windows(ids, 0, max_len) == ref, (n, max_len)


def test_text_pairs_tokenize_as_lm_eval(model):
    from lm_eval.api.instance import Instance
    from lm_eval.api.model import TemplateLM
    tok = model.tokenizer

    class Capture(TemplateLM):
        eot_token_id = tok.eos_id
        def tok_encode(self, string, add_special_tokens=None, **kw): return tok.encode(string)
        def _loglikelihood_tokens(self, requests, **kw): return [(c, x) for _, c, x in requests]
        def loglikelihood_rolling(self, requests, **kw): pass
        def generate_until(self, requests, **kw): pass

    pairs = [p for d in MC_DOCS for p in mc_pairs(d)] + [("The cat ", "sat"), ("x \n ", "y"),
                                                        ("", "<|eos|>The"), ("The", "re")]
    instances = [Instance("loglikelihood", {}, p, 0) for p in pairs]
    got = Capture().loglikelihood(instances, disable_tqdm=True)
    assert got == [encode_pair(tok, *p, tok.eos_id) for p in pairs]


def test_lm_evals_hf_scoring_code_agrees(model):
    "lm-eval's own HFLM scoring (truncation, padding, prefix, rolling) over psann's network."
    transformers = pytest.importorskip("transformers")
    from transformers.modeling_outputs import CausalLMOutput
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    class Config(transformers.PretrainedConfig):
        model_type = "psann_probe"

    class Probe(transformers.PreTrainedModel):   # the network as HFLM sees a model: logits only
        config_class = Config
        def __init__(self, config, net=None):
            super().__init__(config)
            self.net = net
        def forward(self, input_ids, **kw): return CausalLMOutput(logits=self.net(input_ids).logits)

    tok = model.tokenizer
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tok.tok, eos_token="<|eos|>",
                                                  pad_token="<|pad|>")
    probe = Probe(Config(max_position_embeddings=L), model.net).eval()
    lm = quiet(HFLM, pretrained=probe, tokenizer=hf_tok, backend="causal", batch_size=3,
               device="cpu")
    assert (lm.max_length, lm.prefix_token_id) == (L, tok.eos_id)
    pairs = [p for d in MC_DOCS for p in mc_pairs(d)] + [("The cat sat on the mat. " * 8, "The")]
    theirs = quiet(lm.loglikelihood, [Instance("loglikelihood", {}, p, 0) for p in pairs])
    for t, o in zip(theirs, model.loglikelihood(pairs, batch_size=5)):
        assert t[0] == pytest.approx(o.logprob, abs=1e-4) and t[1] == o.is_greedy
    docs = [Instance("loglikelihood_rolling", {}, (t,), 0) for t in PPL_DOCS]
    rolled = quiet(lm.loglikelihood_rolling, docs)
    assert rolled == pytest.approx(model.loglikelihood_rolling(PPL_DOCS), abs=1e-4)


def test_the_registered_model_name_loads_a_saved_model(model, tasks, tmp_path):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager
    saved = model.save(tmp_path / "model")
    tm = TaskManager(include_path=str(tasks), include_defaults=False)
    res = quiet(simple_evaluate, model=HARNESS_NAME, model_args=f"pretrained={saved},batch_size=2",
                tasks=["psann_mc"], task_manager=tm, log_samples=True)
    check_mc(psannLM.load(saved), res["samples"]["psann_mc"])


def test_psann_lm_eval_function(model, tasks, tmp_path, capsys):
    saved, out = model.save(tmp_path / "model"), tmp_path / "results.json"
    quiet(eval_cli, [str(saved), "--tasks", "psann_mc,psann_ppl", "--include_path", str(tasks),
                     "--no_default_tasks", "--log_samples", "--output", str(out)])
    assert "psann_mc" in capsys.readouterr().out                   # the harness's table
    res = json.loads(out.read_text())
    check_mc(model, res["samples"]["psann_mc"])
    check_ppl(model, res["samples"]["psann_ppl"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temporary left


def test_harness_refusals(model, tasks):
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['model_arg'\]"):
        model.evaluate_harness("psann_mc", include_path=tasks, model_arg="x")
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['psann_nope'\]"):
        model.evaluate_harness("psann_nope", include_path=tasks, include_defaults=False)
    with pytest.raises(FileNotFoundError, match="is not a folder of task YAML files"):
        model.evaluate_harness("psann_mc", include_path=tasks / "missing")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        model.evaluate_harness("psann_mc", include_path=tasks, batch_size=0)


@pytest.mark.skipif(shutil.which("psann-lm-eval", path=str(BIN)) is None,
                    reason="the psann-lm-eval console script is not installed (settings.ini)")
def test_psann_lm_eval_command(model, tasks, tmp_path):
    saved, out = model.save(tmp_path / "model"), tmp_path / "results.json"
    proc = subprocess.run([str(BIN / "psann-lm-eval"), str(saved), "--tasks", "psann_mc",
                           "--include_path", str(tasks), "--no_default_tasks", "--log_samples",
                           "--output", str(out)],
                          capture_output=True, text=True, timeout=300, env=os.environ)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_mc(model, json.loads(out.read_text())["samples"]["psann_mc"])


def read_samples(out: Path, task: str) -> list[dict]:
    "The samples `lm_eval --log_samples` wrote for `task`, in the form evaluate_harness returns."
    path, = out.rglob(f"samples_{task}_*.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for s in rows: s["arguments"] = [tuple(a.values()) for a in s["arguments"].values()]
    return rows


@pytest.mark.skipif(importlib.util.find_spec("psann_lm.hf") is None,
                    reason="psann_lm.hf (the transformers face of a saved model) is not built yet")
def test_lm_eval_hf_command(model, tasks, tmp_path):
    "The exact command a user types, on a saved model: lm-eval's own Hugging Face model class."
    from transformers import AutoTokenizer
    from psann_lm import hf
    saved = model.save(tmp_path / "model")
    if "auto_map" not in json.loads((saved / "config.json").read_text()):
        hf.write_hf_files(saved)                     # as long as save does not write them itself
    hf_tok = AutoTokenizer.from_pretrained(saved, trust_remote_code=True)
    prefix = hf_tok.bos_token_id if hf_tok.bos_token_id is not None else hf_tok.eos_token_id
    assert prefix == model.tokenizer.eos_id, (
        f"lm-eval's HF model starts empty contexts and rolling windows with the tokenizer's bos "
        f"({hf_tok.bos_token!r}, id {prefix}); psann_lm starts them with <|eos|> (id "
        f"{model.tokenizer.eos_id}), the token before every document in training: the HF "
        f"tokenizer files must declare bos_token <|eos|> (as GPT-2 does) or no bos_token")
    out = tmp_path / "out"
    cmd = [str(BIN / "lm_eval"), "--model", "hf", "--model_args",
           f"pretrained={saved},trust_remote_code=True", "--tasks", "psann_mc,psann_ppl",
           "--include_path", str(tasks), "--log_samples", "--output_path", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=os.environ)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_mc(model, read_samples(out, "psann_mc"))
    check_ppl(model, read_samples(out, "psann_ppl"))
