"""The product specification's Python examples run as written."""
import re
import warnings
from pathlib import Path

import pytest

SPEC = Path(__file__).resolve().parents[2] / "shared" / "SPEC.md"


def python_blocks():
    if not SPEC.exists(): pytest.skip(f"the product specification is not at {SPEC}")
    return re.findall(r"```python\n(.*?)```", SPEC.read_text(), re.S)


@pytest.mark.parametrize("index", [0, 1])
def test_spec_python_example(index, tmp_path, monkeypatch):
    blocks = python_blocks()
    assert len(blocks) >= 2
    monkeypatch.setenv("PSANN_LM_CACHE", str(tmp_path / "cache"))   # keep the shards out of the user's cache
    code = blocks[index]
    if "import" not in code: code = "from psann_lm import psannLM, psannLMDataPrep\n" + code
    ns = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, f"SPEC.md python block {index}", "exec"), ns)
    model = ns["model"]
    assert model.last_fit["completed"]
    if "out" in ns: assert isinstance(ns["out"], str)


def test_yaml_key_names_are_fit_arguments_too(tmp_path, monkeypatch):
    "The specification's YAML spellings (checkpoint_dir, log_interval_steps, save_interval_steps) work in fit."
    monkeypatch.setenv("PSANN_LM_CACHE", str(tmp_path / "cache"))
    from psann_lm import psannLM, psannLMDataPrep
    run = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = psannLMDataPrep(["test1", "test2"])
        model = psannLM(base="respsann", d_model=16, n_layers=1, n_heads=2)
        model.fit(data, checkpoint_dir=str(run), save_interval_steps=1, log_interval_steps=1, progress=False)
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step_00000001"]
    assert model.last_fit["output_dir"] == str(run)
    assert (run / "metrics.jsonl").exists()
