"""The console scripts installed with the package."""
import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def script(name):
    path = BIN / name
    if not path.exists(): path = shutil.which(name)
    if path is None: pytest.skip(f"{name} is not installed (pip install -e . installs it)")
    return str(path)


def test_bench_writes_results(tmp_path):
    out = tmp_path / "res" / "sine.json"
    proc = subprocess.run([script("psann_lm_bench"), "sine", "--runs", "2", "--inner", "1", "--shape", "2,8,32", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res["command"].startswith("psann_lm_bench sine") and "cpu" in res["machine"]
    assert {r["impl"] for r in res["results"]} == {"fused sine", "fused sine, torch formulas", "eager formula", "GELU"}
    assert all(len(r["runs_ms"]) == 2 for r in res["results"])
    assert not list(out.parent.glob("*.tmp"))


@pytest.mark.parametrize("args, message", [(["attention"], "unknown benchmark 'attention'"),
                                           (["sine", "--shape", "8,x"], "--shape must be comma-separated integers"),
                                           (["ablation", "--arms", "respsann,relu"], "--arms must be among"),
                                           pytest.param(["gpu", "--ablation"], "needs a CUDA GPU", marks=pytest.mark.skipif(
                                               __import__("torch").cuda.is_available(), reason="a GPU is present"))])
def test_bench_bad_arguments(tmp_path, args, message):
    proc = subprocess.run([script("psann_lm_bench"), *args, "--out", str(tmp_path / "r.json")], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and message in proc.stderr
    assert not (tmp_path / "r.json").exists()


def test_demo_runs(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([script("psann_lm_demo"), "--epochs", "0.05", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "validation loss" in proc.stdout and "'Return the number of' → " in proc.stdout
    assert {"metrics.jsonl", "loss.png", "model", "checkpoints"} <= {p.name for p in out.iterdir()}


ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT.parent / "shared" / "SPEC.md"


def spec_yaml() -> str:
    if not SPEC.exists(): pytest.skip(f"the product specification is not at {SPEC}")
    text = SPEC.read_text()
    return text.split("```yaml", 1)[1].split("```", 1)[0]


def test_spec_example_yaml_runs(tmp_path):
    corpus = tmp_path / "data" / "sample_texts.txt"
    corpus.parent.mkdir()
    corpus.write_text("\n\n".join(f"Sample document {i}: the quick brown fox jumps over the lazy dog {i % 7} times." for i in range(200)))
    (tmp_path / "run.yaml").write_text(spec_yaml())        # the example as written; its relative path is found from tmp_path
    shrink = ["model.d_model=32", "model.n_layers=2", "model.n_heads=4", "model.d_mlp=64", "model.vocab_size=400",
              "data.max_length=32", "data.doc_sep='\n\n'", f"data.cache_dir={tmp_path / 'cache'}", "train.max_steps=4",
              "train.batch_tokens=256", "train.warmup_steps=1", "train.log_interval_steps=2", "train.save_interval_steps=2"]
    proc = subprocess.run([script("psann-lm-train"), "--config", "run.yaml", *shrink], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "lm" / "wrn_small"       # the example's checkpoint_dir
    assert (run / "model" / "model.safetensors").exists() and (run / "metrics.jsonl").exists()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000002", "step_00000004"]


@pytest.mark.parametrize("args, message", [(["model.dmodel=3"], "unknown key(s) ['dmodel'] in section 'model'"),
                                           (["train.lr=-1"], "lr must be a number > 0"), (["foo"], "section.key=value")])
def test_train_script_rejects_bad_settings(tmp_path, args, message):
    proc = subprocess.run([script("psann-lm-train"), *args], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_module_entry_point_rejects_bad_settings(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "psann_lm.cli", "train.lr=-1"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and "lr must be a number > 0" in proc.stderr


TINY_RUN = """\
model: {base: respsann, d_model: 32, n_layers: 1, n_heads: 2, vocab_size: 300}
data: {sources: [corpus.txt], doc_sep: "\\n\\n", max_length: 16, cache_dir: cache}
train: {max_steps: 2, batch_size: 2, output_dir: out, progress: false}
"""


def test_module_entry_point_for_accelerate_launch(tmp_path):
    # A bad setting stops psann-lm-train with exit status 2 before anything after it in the module
    # runs, so the earlier form of this test (only `train.lr=-1`) passed while every successful
    # `python -m psann_lm.cli` went on into the demo's parser and exited 2 too: train to the end.
    docs = [f"Document {i}: a fox jumps over a dog {i % 7} times." for i in range(200)]
    (tmp_path / "corpus.txt").write_text("\n\n".join(docs))
    (tmp_path / "run.yaml").write_text(TINY_RUN)
    command = [sys.executable, "-m", "psann_lm.cli", "--config", "run.yaml"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "unrecognized arguments" not in proc.stderr
    assert proc.stdout.count("metrics: out/metrics.jsonl") == 1
    assert (tmp_path / "out" / "metrics.jsonl").exists()
    from psann_lm import psannLM
    assert psannLM.load(tmp_path / "out" / "model").config.d_model == 32


def test_module_main_block_is_last():
    "`python -m psann_lm.cli` runs the module top to bottom: its `__main__` block must come last."
    tree = ast.parse((ROOT / "psann_lm" / "cli.py").read_text())
    last = tree.body[-1]
    assert isinstance(last, ast.If), ast.unparse(last)[:200]
    assert ast.unparse(last.test) == "__name__ == '__main__'"
    assert "call_parse" not in ast.unparse(tree)   # under __main__ it runs its function at once
