"""Security: loading a model reads only JSON and safetensors (a crafted pickle never runs); YAML configs construct no Python
objects; `save` writes nothing outside the directory it is given, whatever the names involved."""
import json
import pickle
import textwrap
import warnings
from pathlib import Path

import pytest

from conftest import run_py
from psann_lm import psannLM
from psann_lm.cli import load_config
from psann_lm.tokenizer import train_tokenizer

TEXTS = [f"Document {i}: the quick brown fox jumps over the lazy dog {i % 7} times." for i in range(30)]


class Payload:
    "Unpickling this creates the file `marker`: proof that a pickle ran."
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def tokenizer():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train_tokenizer(TEXTS, vocab_size=300)


def small_model(tokenizer):
    m = psannLM(base="respsann", d_model=16, n_layers=1, n_heads=2, vocab_size=tokenizer.vocab_size, max_seq_len=16)
    m.tokenizer = tokenizer
    return m


def test_a_pickle_named_model_safetensors_is_refused(tokenizer, tmp_path):
    model = small_model(tokenizer).save(tmp_path / "model")
    marker = tmp_path / "pwned"
    (model / "model.safetensors").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ValueError, match=r"model\.safetensors could not be read as safetensors"):
        psannLM.load(model)
    assert not marker.exists(), "the pickle ran"


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "model.ckpt"])
def test_a_directory_offering_only_a_pickle_is_refused(name, tokenizer, tmp_path):
    model = small_model(tokenizer).save(tmp_path / "model")
    marker = tmp_path / "pwned"
    (model / "model.safetensors").unlink()
    (model / name).write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ValueError, match=rf"\['{name}'\] but no model\.safetensors: psann_lm never unpickles"):
        psannLM.load(model)
    assert not marker.exists(), "the pickle ran"


LOAD_AUDITED = textwrap.dedent("""
    import json, sys
    from psann_lm import psannLM
    events = []
    def hook(event, args):
        if event in ("open", "pickle.find_class", "marshal.loads", "exec", "os.system", "subprocess.Popen", "ctypes.dlopen"):
            events.append([event, str(args[0]) if args else ""])
    directory = sys.argv[1]
    sys.addaudithook(hook)
    m = psannLM.load(directory)
    sys.stdout.write(json.dumps(dict(events=events, vocab=m.config.vocab_size)))
""")


def test_load_opens_only_json_and_safetensors(tokenizer, tmp_path):
    "With pickles lying next to a good model, load opens its JSON files and the safetensors file, and never unpickles."
    model = small_model(tokenizer).save(tmp_path / "model")
    marker = tmp_path / "pwned"
    for name in ("pytorch_model.bin", "optimizer.pt", "extra.pkl", "tokenizer/tokenizer.pkl"):
        (model / name).write_bytes(pickle.dumps(Payload(marker)))
    proc = run_py(f"import sys; sys.argv = ['load', {str(model)!r}]\n" + LOAD_AUDITED)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = json.loads(proc.stdout.strip().splitlines()[-1])["events"]
    assert not [e for e in events if e[0] != "open"], f"load unpickled or ran something: {events}"
    inside = {Path(p).resolve().relative_to(model.resolve()).as_posix() for _, p in events if Path(p).resolve().is_relative_to(model.resolve())}
    assert inside <= {"config.json", "model.safetensors", "tokenizer/psann_tokenizer.json", "tokenizer/tokenizer.json"}, inside
    assert "config.json" in inside
    assert not marker.exists()


@pytest.mark.parametrize("path", ["../elsewhere", "ABSOLUTE", "tokenizer/../../x", ".."])
def test_load_follows_no_path_out_of_the_model_directory(path, tokenizer, tmp_path):
    model = small_model(tokenizer).save(tmp_path / "model")
    small_model(tokenizer).save(tmp_path / "elsewhere")                  # a real tokenizer there: only the name is at fault
    meta = json.loads((model / "config.json").read_text())
    meta["tokenizer"]["path"] = str(tmp_path / "elsewhere" / "tokenizer") if path == "ABSOLUTE" else path
    (model / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="is not the name of a directory inside the model directory"):
        psannLM.load(model)


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system ['touch {m}']", "!!python/object/apply:builtins.open ['{m}', 'w']",
                                 "!!python/object/new:builtins.open ['{m}', 'w']", "!!python/name:os.system"])
def test_yaml_with_a_python_tag_is_refused_and_nothing_runs(tag, tmp_path):
    marker = tmp_path / "pwned"
    config = tmp_path / "run.yaml"
    config.write_text(f"train:\n  lr: {tag.format(m=marker)}\n")
    with pytest.raises(ValueError, match=r"is not valid YAML \(only plain data is accepted, no Python tags\)"):
        load_config(config)
    with pytest.raises(ValueError, match=r"train\.lr must be a number > 0, got [\"']!!python"):   # an override is read as plain text
        load_config(None, [f"train.lr={tag.format(m=marker)}"])
    assert not marker.exists(), "YAML constructed a Python object"


def tree(root: Path) -> set:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@pytest.mark.parametrize("backend", ["bpe", "../../escape", "ABSOLUTE", "tok/../../../escape"])
def test_save_writes_only_inside_its_directory(backend, tokenizer, tmp_path):
    "The names save writes are fixed; nothing user-controlled (here the tokenizer's backend name) becomes a path."
    m = small_model(tokenizer)
    if backend == "ABSOLUTE": backend = str(tmp_path / "escape")
    m.tokenizer.backend, original = backend, m.tokenizer.backend
    try:
        (tmp_path / "a" / "b").mkdir(parents=True)
        before = tree(tmp_path)
        out = m.save(tmp_path / "a" / "b" / "model")
        m.save(out)                                                     # and again, replacing it
    finally:
        m.tokenizer.backend = original
    new = tree(tmp_path) - before
    hf = {"generation_config.json", "modeling_psann_lm.py", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"}
    assert new == {"a/b/model", "a/b/model/config.json", "a/b/model/model.safetensors", "a/b/model/tokenizer",
                   "a/b/model/tokenizer/tokenizer.json", "a/b/model/tokenizer/psann_tokenizer.json",
                   *(f"a/b/model/{name}" for name in hf)}, sorted(new)   # transformers' files, by fixed names
    assert not (tmp_path / "escape").exists()
    assert json.loads((out / "config.json").read_text())["tokenizer"]["path"] == "tokenizer"


def test_save_refuses_to_replace_a_directory_it_did_not_write(tokenizer, tmp_path, monkeypatch):
    "save('.') in a project folder would otherwise clear it: it is refused, and nothing is removed or added."
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "notes.txt").write_text("keep me")
    before = tree(tmp_path)
    monkeypatch.chdir(project)
    for target in (".", "src/..", str(project)):
        with pytest.raises(FileExistsError, match="is not a psann_lm model directory"):
            small_model(tokenizer).save(target)
    assert tree(tmp_path) == before and (project / "notes.txt").read_text() == "keep me"
