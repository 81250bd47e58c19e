"""The catalogue of bad inputs: each case is one mistake a user can make, the exception it raises and what the message says.

`CASES` is a list of `Case(id, what, call, exc, match)`: `call()` makes the mistake (its files live in a temporary
directory it creates and removes), `exc` is the exception type it must raise and `match` a regular expression its
message must contain; the message names the offending argument and value. `tests/test_bad_inputs.py` checks every case,
and the troubleshooting guide renders the same list as a table.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

TEXTS = [f"Document {i}: the quick brown fox jumps over the lazy dog {i % 7} times, then rests." for i in range(40)]
WRITTEN: list[str] = []   # what the last `call()` changed: files it left in its output directory `out/`, inputs it removed
_MADE: set[Path] = set()  # the inputs the current call wrote with `_write`


@dataclass(frozen=True)
class Case:
    "One bad input: `call()` must raise `exc` with a message matching `match`."
    id: str                                # short stable name
    what: str                              # the mistake, in words
    call: Callable[[], object]             # makes the mistake
    exc: type[BaseException]               # the exception type it raises
    match: str                             # regular expression the message contains


class ExitStatus(Exception):
    "A command-line run that failed: its exit status and standard error (the message the user sees)."
    def __init__(self, code: int, stderr: str):
        super().__init__(stderr.strip())
        self.code, self.stderr = code, stderr


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _in_tmp(fn: Callable[[Path], object]):
    "Run `fn(d)` in a fresh temporary directory `d` whose `out/` is where work would go; record what is left in `out/`."
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "out").mkdir()
        _MADE.clear()
        try: return fn(d)
        finally:
            made = {p for m in _MADE for p in [m, *m.parents]}
            WRITTEN[:] = sorted(str(p.relative_to(d)) for p in (d / "out").rglob("*") if p not in made) + \
                         sorted(f"removed {p.relative_to(d)}" for p in _MADE if not p.exists())


def _write(path: Path, content) -> Path:
    "An input file of the case (it may lie in `out/`; the check then expects it to be left alone)."
    _MADE.add(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


@functools.lru_cache(maxsize=None)
def _tokenizer():
    from psann_lm.tokenizer import train_tokenizer
    return _quiet(train_tokenizer, TEXTS, vocab_size=300)


@functools.lru_cache(maxsize=None)
def _model():
    "A small model with its tokenizer, as `psannLM.load` returns one (built in memory, nothing written)."
    from psann_lm import psannLM
    m = psannLM(base="respsann", d_model=16, n_layers=1, n_heads=2, vocab_size=_tokenizer().vocab_size, max_seq_len=32)
    m.tokenizer = _tokenizer()
    return m


def _data(d: Path, **kw):
    "Prepared data in `d/cache` (not in `d/out`)."
    from psann_lm import psannLMDataPrep
    return _quiet(psannLMDataPrep, TEXTS, **{"vocab_size": 300, "max_length": 16, "cache_dir": d / "cache", "progress": False, **kw})


def _damaged_cache(d: Path):
    "Prepared data whose first training shard changed on disk since, prepared again (the cache is reused)."
    shard = (first := _data(d)).directory / first.meta["splits"]["train"]["shards"][0]["file"]
    data = bytearray(shard.read_bytes())
    data[0] ^= 1
    shard.write_bytes(bytes(data))
    return _data(d)


def _prep(data_fn, **kw):
    "psannLMDataPrep on `data_fn(d)` with its shards going to `d/out`."
    from psann_lm import psannLMDataPrep
    return lambda: _in_tmp(lambda d: psannLMDataPrep(data_fn(d), **{"vocab_size": 300, "cache_dir": d / "out", "progress": False, **kw}))


def _bare_tokenizer(d: Path) -> Path:
    "A tokenizer.json trained with no special token at all (so without an end token)."
    import tokenizers
    from tokenizers import models, trainers
    tok = tokenizers.Tokenizer(models.BPE())
    tok.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=100, special_tokens=[], show_progress=False))
    return _write(d / "bare.json", tok.to_str())


def _new_model(**kw):
    from psann_lm import psannLM
    return lambda: psannLM(**kw)


def _fit(model_kw=None, data=None, **fit_kw):
    "Fit a small model on prepared data with `fit_kw` (values 'OUT'/'FILE'/'NOWHERE' stand for paths in the temporary directory)."
    from psann_lm import psannLM
    def run(d):
        paths = {"OUT": str(d / "out"), "FILE": str(_write(d / "a_file", "not a directory")), "NOWHERE": str(d / "no_checkpoint")}
        kw = {k: paths.get(v, v) if isinstance(v, str) else v for k, v in fit_kw.items()}
        m = psannLM(**{"base": "respsann", "d_model": 16, "n_layers": 1, "n_heads": 2, **(model_kw or {})})
        return m.fit(data if data is not None else _data(d), **{"progress": False, "peak_flops": 1e12, **kw})
    return lambda: _in_tmp(run)


def _resume(second=None, data=None, damage=None):
    """Fit 1 step into `d/first`, then fit into `out/` resuming from its checkpoint, with `second` model settings, data
    `data(d, first_data)` or the checkpoint damaged by `damage(ckpt)` (GELU: no sine kernel is built into the cache)."""
    from psann_lm import psannLM
    model = {"base": "respsann", "d_model": 16, "n_layers": 1, "n_heads": 2, "mlp_activation": "gelu"}
    def run(d):
        first_data = _data(d)
        psannLM(**model).fit(first_data, max_steps=1, batch_size=4, output_dir=str(d / "first"), progress=False, peak_flops=1e12)
        ckpt = d / "first" / "checkpoints" / "step_00000001"
        if damage: damage(ckpt)
        again = data(d, first_data) if data else first_data
        return psannLM(**{**model, **(second or {})}).fit(again, max_steps=2, batch_size=4, output_dir=str(d / "out"),
                                                           resume=str(ckpt), progress=False, peak_flops=1e12)
    return lambda: _in_tmp(run)


def _cut_short(ckpt: Path):
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


def _generate(*args, **kw):
    return lambda: _model().generate(*args, **kw)


def _saved(d: Path) -> Path:
    return _model().save(d / "model")


def _load(make_dir, **kw):
    "psannLM.load on the directory `make_dir(d)` builds."
    from psann_lm import psannLM
    return lambda: _in_tmp(lambda d: psannLM.load(make_dir(d), **kw))


def _edit_config(d: Path, edit) -> Path:
    m = _saved(d)
    meta = json.loads((m / "config.json").read_text())
    edit(meta)
    (m / "config.json").write_text(json.dumps(meta))
    return m


def _load_config(path_fn):
    "load_config on the path `path_fn(d)` gives."
    from psann_lm.cli import load_config
    return lambda: _in_tmp(lambda d: load_config(path_fn(d)))


def _config(text):
    "load_config on a YAML file holding `text` (str or bytes); `text` may be a function of the temporary directory."
    from psann_lm.cli import load_config
    return lambda: _in_tmp(lambda d: load_config(_write(d / "run.yaml", text(d) if callable(text) else text)))


def _cli(module: str, *args: str, yaml: str | None = None):
    "Run a console command in a subprocess (working directory and cache in `out/`); a failure is raised as `ExitStatus`."
    entry = {"train": "psann_lm.cli", "bench": "psann_lm.benchmarks"}[module]     # what psann-lm-train and psann_lm_bench run
    def run(d):
        argv = [a.replace("YAML", str(d / "run.yaml")) for a in args]
        if yaml is not None: _write(d / "run.yaml", yaml)
        env = {**os.environ, "PSANN_LM_CACHE": str(d / "out" / "cache")}
        proc = subprocess.run([sys.executable, "-m", entry, *argv], capture_output=True, text=True, cwd=d / "out", env=env, timeout=300)
        if proc.returncode != 0: raise ExitStatus(proc.returncode, proc.stderr)
        return proc
    return lambda: _in_tmp(run)


def _save(target, model=None):
    "save() of the small model (or `model`) into `target(d)`."
    return lambda: _in_tmp(lambda d: (model or _model()).save(target(d)))


def _tokenizer_escape(meta):
    meta["tokenizer"]["path"] = "../elsewhere"


def _flip_bit(p: Path) -> Path:
    "`p` (a safetensors file) with one bit of its tensor data flipped, 100 bytes past the header."
    data = bytearray(p.read_bytes())
    data[8 + int.from_bytes(data[:8], "little") + 100] ^= 1
    return _write(p, bytes(data))


def _truncate(p: Path) -> Path:
    "`p` without its last 100 bytes."
    return _write(p, p.read_bytes()[:-100])


CASES = [
    # psannLM(...)
    Case("model-unknown-base", "an unknown base architecture", _new_model(base="transformer"), ValueError, r"base must be one of .*got 'transformer'"),
    Case("model-unknown-setting", "a misspelt model setting", _new_model(dmodel=64), TypeError, r"unexpected keyword argument\(s\) \['dmodel'\]"),
    Case("model-d_model-type", "a width given as a string", _new_model(d_model="512"), ValueError, r"d_model must be a positive int, got '512'"),
    Case("model-n_layers-zero", "no layers", _new_model(n_layers=0), ValueError, r"n_layers must be a positive int, got 0"),
    Case("model-heads-divide", "n_heads that does not divide d_model", _new_model(d_model=64, n_heads=5), ValueError, r"d_model \(64\) must be divisible by n_heads \(5\)"),
    Case("model-positional", "an unknown positional encoding", _new_model(positional="learned"), ValueError, r"positional must be one of .*got 'learned'"),
    Case("model-activation", "an unknown MLP activation", _new_model(mlp_activation="relu"), ValueError, r"mlp_activation must be one of .*got 'relu'"),
    Case("model-sine-param", "an unknown sine parameter", _new_model(sine_params={"frequency": 2.0}), ValueError, r"unknown sine param\(s\) \['frequency'\]"),
    Case("model-alias-twice", "the context length given under both names", _new_model(max_length=64, max_seq_len=128), TypeError, r"give 'max_length' or 'max_seq_len', not both"),
    Case("model-oversized", "a vocabulary too large for the machine's memory", _new_model(vocab_size=10**12, d_model=64, n_heads=2, n_layers=1), ValueError, r"vocab_size=1000000000000.*more than this machine's"),
    Case("model-seed", "an init seed given as a string", _new_model(seed="7"), ValueError, r"seed must be an int in \[0, 2\*\*64\), got '7'"),
    # psannLMDataPrep(...)
    Case("data-empty-list", "an empty list of texts", _prep(lambda d: []), ValueError, r"no data: the list of texts or paths is empty"),
    Case("data-empty-texts", "texts that are all empty", _prep(lambda d: ["", ""]), ValueError, r"all 2 texts are empty"),
    Case("data-wrong-type", "a number where texts or paths belong", _prep(lambda d: 123), ValueError, r"expected a list of texts, a path, a glob or a list of paths, got int"),
    Case("data-mixed-list", "a list mixing texts and Paths", _prep(lambda d: ["some text", d / "a.txt"]), ValueError, r"the list mixes strings \(texts\) and Paths \(files\)"),
    Case("data-missing-file", "a file that does not exist", _prep(lambda d: d / "missing.txt"), FileNotFoundError, r"no such file: '.*missing\.txt'"),
    Case("data-damaged-cache", "a cached preparation whose shard changed on disk", lambda: _in_tmp(_damaged_cache), ValueError, r"train_00000\.bin is damaged \(its SHA-256 is not the one meta\.json records\): delete .* and run again"),
    Case("data-empty-glob", "a glob that matches nothing", _prep(lambda d: str(d / "*.nothing")), ValueError, r"the glob '.*\*\.nothing' matches no file"),
    Case("data-directory", "a directory instead of files", _prep(lambda d: d / "out"), ValueError, r"is a directory; pass a glob"),
    Case("data-invalid-utf8", "a file that is not UTF-8 text", _prep(lambda d: _write(d / "latin1.txt", b"caf\xe9 au lait")), ValueError, r"latin1\.txt: not valid UTF-8 at byte 3"),
    Case("data-max_length", "a context of one token", _prep(lambda d: TEXTS, max_length=1), ValueError, r"max_length must be an int >= 2, got 1"),
    Case("data-val_split", "a validation fraction above 1", _prep(lambda d: TEXTS, val_split=1.5), ValueError, r"val_split must be a number in \[0, 1\), got 1\.5"),
    Case("data-backend", "an unknown tokenizer backend", _prep(lambda d: TEXTS, tokenizer="sentencepiece-wordpiece"), ValueError, r"tokenizer backend must be .*got 'sentencepiece-wordpiece'"),
    Case("data-vocab-too-small", "a byte-level BPE vocabulary smaller than its 256 bytes", _prep(lambda d: TEXTS, vocab_size=100), ValueError, r"vocab_size=100 is too small for bpe"),
    Case("data-min_frequency", "a merge frequency of zero", _prep(lambda d: TEXTS, min_frequency=0), ValueError, r"min_frequency must be an int >= 1, got 0"),
    Case("data-tokenizer-missing", "a tokenizer file that does not exist", _prep(lambda d: TEXTS, tokenizer=Path("no_such_dir/tok.json")), FileNotFoundError, r"no tokenizer at no_such_dir/tok\.json"),
    Case("data-tokenizer-corrupt", "a tokenizer.json that is not valid", lambda: _in_tmp(lambda d: _prep(lambda _: TEXTS, tokenizer=_write(d / "tok.json", "{broken"))()), ValueError, r"tok\.json is not a valid tokenizers JSON file"),
    Case("data-errors-name", "an unknown decoding error policy", _prep(lambda d: TEXTS, errors="skip"), ValueError, r"errors must be one of .*got 'skip'"),
    Case("data-doc_sep-empty", "an empty document separator", _prep(lambda d: TEXTS, doc_sep=""), ValueError, r"doc_sep must be a non-empty string or None, got ''"),
    Case("data-pack-type", "a string where a switch belongs", _prep(lambda d: TEXTS, pack_sequences="no"), ValueError, r"pack_sequences must be true or false, got 'no'"),
    Case("data-cache-is-file", "a cache directory that is a file", lambda: _in_tmp(lambda d: _prep(lambda _: TEXTS, cache_dir=_write(d / "cache_file", "x"))()), ValueError, r"cache_dir='.*cache_file' is a file"),
    Case("data-jsonl", "a JSON Lines file whose text is under another field", _prep(lambda d: _write(d / "corpus.jsonl", '{"body": "hi"}\n')), ValueError, r"corpus\.jsonl: line 1 has no 'text' field \(its fields: 'body'\); name the text's field with text_field="),
    Case("data-parquet", "a Parquet file named .txt, read with errors='replace'", _prep(lambda d: _write(d / "table.txt", b"PAR1" + bytes(64)), errors="replace"), ValueError, r"table\.txt: a Parquet file named as text; rename it table\.parquet"),
    Case("data-path-typo", "a list of file names with one misspelt", _prep(lambda d: [str(_write(d / "a.txt", "alpha")), str(d / "b.tx")]), ValueError, r"item 1 \('.*b\.tx'\) names no file.*from_files"),
    Case("data-val-one-line", "a validation split of a one-line corpus", _prep(lambda d: ["one line of text, nothing else"], val_split=0.1), ValueError, r"val_split=0\.1 cannot be honoured: the corpus is a single line"),
    Case("data-tokenizer-no-eos", "a prebuilt tokenizer without an end-of-sequence token", lambda: _in_tmp(lambda d: _prep(lambda _: TEXTS, tokenizer=_bare_tokenizer(d))()), ValueError, r"bare\.json has no end-of-sequence token .*pass eos_token='<\|eos\|>'"),
    # fit(...)
    Case("fit-lr", "a negative learning rate", _fit(lr=-1, max_steps=1), ValueError, r"lr must be a number > 0, got -1"),
    Case("fit-unknown-setting", "a misspelt training setting", _fit(learning_rate=1e-3), TypeError, r"unexpected keyword argument\(s\) \['learning_rate'\]"),
    Case("fit-amp", "an unknown precision", _fit(amp="fp8"), ValueError, r"amp must be one of .*got 'fp8'"),
    Case("fit-fsdp-fp16", "FSDP with fp16's loss scaler", _fit(fsdp=True, amp="fp16"), ValueError, r"fsdp=True with amp='fp16' is not supported.*use amp='bf16'"),
    Case("fit-max_steps", "zero steps", _fit(max_steps=0), ValueError, r"max_steps must be a positive int or None, got 0"),
    Case("fit-seed", "a negative seed", _fit(seed=-1, max_steps=1), ValueError, r"seed must be an int .*got -1"),
    Case("fit-betas", "an AdamW beta of 1.5", _fit(betas=(0.9, 1.5)), ValueError, r"betas must be two numbers in \[0, 1\), got \(0\.9, 1\.5\)"),
    Case("fit-not-data", "a string instead of prepared data", _fit(data="some text"), TypeError, r"fit\(\) needs a psannLMDataPrep .*got str"),
    Case("fit-resume-no-dir", "resume=True without an output directory", _fit(resume=True), ValueError, r"resume=True looks in output_dir, which is not set"),
    Case("fit-resume-missing", "a checkpoint path that does not exist", _fit(resume="NOWHERE", output_dir="OUT"), FileNotFoundError, r"resume='.*no_checkpoint' is not a checkpoint directory"),
    Case("fit-output-is-file", "an output directory that is a file", _fit(output_dir="FILE", max_steps=1), ValueError, r"output_dir='.*a_file' is a file"),
    Case("fit-context-too-long", "data windows longer than the model's context", _fit(model_kw=dict(max_seq_len=8), max_steps=1), ValueError, r"max_length=16 exceeds the model's max_seq_len=8"),
    Case("fit-resume-changed-model", "resuming a checkpoint with a wider model", _resume(second=dict(d_model=32)), ValueError, r"cannot resume from .*step_00000001: it was written by a different run \(model\.d_mlp 64 → 128, model\.d_model 16 → 32\)\. To go on, resume from a checkpoint of this run, or start fresh with resume=False"),
    Case("fit-resume-changed-tokenizer", "resuming with data made by another tokenizer", _resume(data=lambda d, first: _data(d, vocab_size=270)), ValueError, r"it was written by a different run \(.*tokenizer '[0-9a-f]+…' → '[0-9a-f]+…'"),
    Case("fit-resume-changed-data", "resuming on other texts without resume='force'", _resume(data=lambda d, first: _quiet(first.__class__, TEXTS[:30], tokenizer=first.tokenizer, max_length=16, cache_dir=d / "cache", progress=False)), ValueError, r"data\.corpus '.*' → '.*'.*continue on the changed data deliberately with resume='force"),
    Case("fit-resume-damaged", "resuming from a checkpoint whose weights were cut short", _resume(damage=_cut_short), ValueError, r"resume='.*step_00000001' is a damaged checkpoint: model\.safetensors has 1,000 bytes, not the [\d,]+ written"),
    # generate(...)
    Case("gen-unfitted", "generating before fitting", lambda: _new_model(base="respsann", d_model=16, n_layers=1, n_heads=2)().generate("hi"), RuntimeError, r"generate\(\) needs a fitted \(or loaded\) model"),
    Case("gen-prompt-type", "a number as the prompt", _generate(123), ValueError, r"prompt must be a string or a non-empty list of strings, got 123"),
    Case("gen-prompt-empty-list", "an empty list of prompts", _generate([]), ValueError, r"prompt must be a string or a non-empty list of strings, got \[\]"),
    Case("gen-temperature", "a negative temperature", _generate("hi", temperature=-1), ValueError, r"temperature must be a number >= 0, got -1"),
    Case("gen-top_k", "top_k of zero", _generate("hi", top_k=0), ValueError, r"top_k must be an int >= 1 or None, got 0"),
    Case("gen-top_p", "top_p above 1", _generate("hi", top_p=1.5), ValueError, r"top_p must be in \(0, 1\] or None, got 1\.5"),
    Case("gen-repetition_penalty", "a repetition penalty of zero", _generate("hi", repetition_penalty=0), ValueError, r"repetition_penalty must be > 0, got 0"),
    Case("gen-max_new_tokens", "zero new tokens", _generate("hi", max_new_tokens=0), ValueError, r"max_new_tokens must be a positive int, got 0"),
    Case("gen-max_new_tokens-oversized", "more new tokens than memory can hold", _generate("hi", max_new_tokens=10**13), ValueError, r"max_new_tokens=10000000000000 .*more than this machine's"),
    Case("gen-stop-type", "a number as the stop string", _generate("hi", stop=5), ValueError, r"stop must be a string, a list of strings or None, got 5"),
    Case("gen-seed-type", "a string as the seed", _generate("hi", seed="x"), ValueError, r"seed must be an int or None, got 'x'"),
    Case("gen-eos-range", "an end-of-sequence id outside the vocabulary", _generate("hi", eos_token_id=10**9), ValueError, r"eos_token_id must be a token id in \[0, \d+\) or a list of them, got 1000000000"),
    Case("gen-do_sample", "a string where a switch belongs", _generate("hi", do_sample="yes"), ValueError, r"do_sample must be true, false or None, got 'yes'"),
    Case("gen-stop-empty", "an empty stop string", _generate("hi", stop=""), ValueError, r"each stop string must be non-empty"),
    # save(...)
    Case("save-unbuilt", "saving a model that was never built", lambda: _new_model(base="respsann", d_model=16, n_layers=1, n_heads=2)().save("model"), RuntimeError, r"nothing to save: the model has not been built"),
    Case("save-not-a-model-dir", "saving over a folder that is not a model", _save(lambda d: _write(d / "out" / "project" / "notes.txt", "keep me").parent), FileExistsError, r"project exists and is not a psann_lm model directory"),
    Case("save-onto-file", "saving onto a file", _save(lambda d: _write(d / "out" / "weights.txt", "keep me")), FileExistsError, r"weights\.txt exists and is not a psann_lm model directory"),
    # psannLM.load(...)
    Case("load-missing", "a directory that does not exist", _load(lambda d: d / "nowhere"), FileNotFoundError, r"no model directory at .*nowhere"),
    Case("load-is-file", "a file instead of a model directory", _load(lambda d: _write(d / "model.safetensors", b"")), NotADirectoryError, r"model\.safetensors is a file, not a model directory"),
    Case("load-pickle", "a directory offering only a pickle", _load(lambda d: _write(d / "m" / "pytorch_model.bin", b"\x80\x04K\x01.").parent), ValueError, r"\['pytorch_model\.bin'\] but no model\.safetensors: psann_lm never unpickles"),
    Case("load-corrupt-weights", "a model.safetensors that is not safetensors", _load(lambda d: _write(_saved(d) / "model.safetensors", b"\x00" * 64).parent), ValueError, r"model\.safetensors could not be read as safetensors"),
    Case("load-flipped-bit", "weights with one bit flipped since they were saved", _load(lambda d: _flip_bit(_saved(d) / "model.safetensors").parent), ValueError, r"model\.safetensors is corrupt: its SHA-256 is not the one recorded in config\.json"),
    Case("load-truncated", "weights cut short", _load(lambda d: _truncate(_saved(d) / "model.safetensors").parent), ValueError, r"model\.safetensors could not be read as safetensors .*damaged"),
    Case("load-bad-checksums", "a config.json whose checksums entry is not a SHA-256", _load(lambda d: _edit_config(d, lambda m: m.update(checksums={"model.safetensors": "0"}))), ValueError, r"checksums must map 'model\.safetensors' .*SHA-256 hex digests"),
    Case("load-bad-json", "a config.json that is not JSON", _load(lambda d: _write(_saved(d) / "config.json", "{not json").parent), ValueError, r"config\.json is not valid JSON"),
    Case("load-wrong-format", "a config.json of another library", _load(lambda d: _write(_saved(d) / "config.json", '{"model_type": "gpt2"}').parent), ValueError, r"config\.json is not a psann_lm model config"),
    Case("load-no-model-section", "a config.json without its model section", _load(lambda d: _edit_config(d, lambda m: m.pop("model"))), ValueError, r"config\.json has no 'model' section"),
    Case("load-mismatch", "weights that do not fit config.json", _load(lambda d: _edit_config(d, lambda m: m["model"].update(d_model=32))), ValueError, r"model\.safetensors does not match config\.json"),
    Case("load-tokenizer-escape", "a tokenizer path leading out of the model directory", _load(lambda d: _edit_config(d, _tokenizer_escape)), ValueError, r"tokenizer path '\.\./elsewhere' .*inside"),
    Case("load-device", "an unknown device", _load(_saved, device="tpu"), ValueError, r"device must be .*got 'tpu'"),
    # YAML configs (load_config)
    Case("yaml-missing", "a config file that does not exist", _load_config(lambda d: d / "nope.yaml"), FileNotFoundError, r"no config file .*nope\.yaml"),
    Case("yaml-directory", "a directory instead of a config file", _load_config(lambda d: d), ValueError, r"is a directory, not a YAML file"),
    Case("yaml-binary", "a config file that is not text", _config(b"\xff\xfe\x00\x01"), ValueError, r"run\.yaml is not UTF-8 text"),
    Case("yaml-syntax", "a config with a YAML syntax error", _config("model: [1, 2\n"), ValueError, r"run\.yaml is not valid YAML"),
    Case("yaml-python-tag", "a config with a Python object tag", _config(lambda d: f"!!python/object/apply:os.mkdir ['{d / 'out' / 'pwned'}']\n"), ValueError, r"is not valid YAML \(only plain data is accepted, no Python tags\)"),
    Case("yaml-not-mapping", "a config that is a list", _config("- model\n- train\n"), ValueError, r"run\.yaml must hold a mapping with sections"),
    Case("yaml-unknown-section", "an unknown section", _config("optim:\n  lr: 0.1\n"), ValueError, r"unknown section\(s\) \['optim'\]"),
    Case("yaml-unknown-key", "a misspelt model key", _config("model:\n  dmodel: 64\n"), ValueError, r"unknown key\(s\) \['dmodel'\] in section 'model'"),
    Case("yaml-model-value", "a negative model width", _config("model:\n  d_model: -1\n"), ValueError, r"model\.d_model must be a positive int, got -1"),
    Case("yaml-data-value", "a one-token context", _config("data:\n  max_length: 1\n"), ValueError, r"data\.max_length must be an int >= 2, got 1"),
    Case("yaml-train-value", "a learning rate that is a word", _config("train:\n  lr: fast\n"), ValueError, r"lr must be a number > 0, got 'fast'"),
    Case("yaml-missing-source", "a data source that does not exist", _config(lambda d: f"data:\n  sources: ['{d / 'missing.txt'}']\n"), FileNotFoundError, r"data\.sources: no such file: '.*missing\.txt'"),
    Case("yaml-source-type", "a data source that is a number", _config("data:\n  sources: [42]\n"), ValueError, r"each data source must be a path or \{path: \.\.\., text_field: \.\.\.\}, got 42"),
    # command lines
    Case("cli-missing-config", "psann-lm-train with a config file that does not exist", _cli("train", "--config", "nope.yaml"), ExitStatus, r"psann-lm-train: no config file nope\.yaml"),
    Case("cli-bad-override", "an override without a value", _cli("train", "train.lr"), ExitStatus, r"override 'train\.lr' must look like section\.key=value"),
    Case("cli-model-value", "an unknown base on the command line", _cli("train", "model.base=gpt"), ExitStatus, r"model\.base must be one of .*got 'gpt'"),
    Case("cli-unknown-option", "an option psann-lm-train does not have", _cli("train", "--epochs", "3"), ExitStatus, r"unrecognized arguments: --epochs"),
    Case("cli-config-value", "a bad value in the config file", _cli("train", "--config", "YAML", yaml="train:\n  max_steps: 0\n"), ExitStatus, r"max_steps must be a positive int or None, got 0"),
    Case("bench-unknown", "an unknown benchmark name", _cli("bench", "attention"), ExitStatus, r"unknown benchmark 'attention'"),
    Case("bench-shape", "a benchmark shape that is not integers", _cli("bench", "sine", "--shape", "8,x"), ExitStatus, r"--shape must be comma-separated integers, got '8,x'"),
    Case("bench-runs-zero", "zero benchmark rounds", _cli("bench", "sine", "--runs", "0"), ExitStatus, r"--runs must be >= 1, got 0"),
    Case("bench-runs-type", "a number of runs that is a word", _cli("bench", "sine", "--runs", "many"), ExitStatus, r"argument --runs: invalid int value: 'many'"),
]
