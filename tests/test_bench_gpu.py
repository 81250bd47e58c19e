"""`psann_lm_bench gpu` (`bench_gpu`): the whole code path on a CPU at tiny sizes, the budget, the
incremental JSON, and the refusal without CUDA."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from psann_lm.benchmarks import GPU_GOALS, GPU_TRAIN_CONFIGS, bench_gpu

TINY = dict(vocab=300, d_model=32, n_layers=2, n_heads=2, seq_len=32, batch=2, steps=2, warmup=1,
            sine_shape=(2, 8, 64), sine_runs=2, gen_batches=(1,), prompt_len=4, new_tokens=3,
            gen_runs=1)
quiet = lambda msg: None


def bench_script():
    path = Path(sys.executable).parent / "psann_lm_bench"
    path = str(path) if path.exists() else shutil.which("psann_lm_bench")
    if path is None: pytest.skip("psann_lm_bench is not installed (pip install -e . installs it)")
    return path


def test_whole_path_on_cpu_with_compile(tmp_path):
    "Every section runs (compiled ones by torch.compile's eager backend); the JSON has them all."
    out = tmp_path / "res" / "gpu.json"
    st = bench_gpu(out, device="cpu", backend="eager", peak_flops=1e11, log=quiet, **TINY)
    res = json.loads(out.read_text())
    assert set(res) == {"command", "machine", "date", "results"}
    assert res["command"] == "psann_lm_bench gpu"
    assert "cpu" in res["machine"] and res["results"] == [json.loads(json.dumps(st))]
    assert {"settings", "device_name", "peak_flops", "peak_source", "sine", "train", "generate",
            "skipped", "failed", "goals", "wall_s", "finished"} <= set(st)
    assert st["finished"] is True and st["failed"] == [] and st["skipped"] == []
    assert st["peak_source"] == "given (peak_flops)" and st["settings"]["backend"] == "eager"
    assert [r["impl"] for r in st["sine"]] == ["sine op", "sine, torch formulas", "GELU"]
    ran = [(r["model"], r["compiled"], r["grad_checkpoint"]) for r in st["train"]]
    assert ran == list(GPU_TRAIN_CONFIGS)
    for r in st["train"]:
        assert r["tokens_per_s"] > 0 and len(r["runs_ms"]) == 2
        assert r["peak_mb"] is None   # CUDA memory only
        assert r["mfu"] == pytest.approx(r["tokens_per_s"] * r["flops_per_token"] / 1e11, rel=1e-2)
    assert [r["model"] for r in st["generate"]] == ["respsann", "waveresnet", "HF GPT-2"]
    goals = st["goals"]
    assert [g["goal"] for g in goals] == [g for g, _, _ in GPU_GOALS]
    assert all(isinstance(g["measured"], float) and isinstance(g["passed"], bool) for g in goals)
    compiled = [r for r in st["train"] if r["compiled"] and not r["grad_checkpoint"]]
    tps = {r["model"]: r["tokens_per_s"] for r in compiled}
    assert goals[0]["measured"] == round(tps["respsann"] / tps["HF GPT-2"], 3)
    assert goals[0]["passed"] == (goals[0]["measured"] >= 1.0)
    assert goals[2]["measured"] == st["sine"][0]["vs_gelu"]
    assert goals[2]["passed"] == (goals[2]["measured"] <= 1.2)
    assert goals[3]["measured"] == next(r["mfu"] for r in compiled if r["model"] == "respsann")
    assert not list(out.parent.glob("*.tmp"))


def test_budget_skips_with_reasons(tmp_path):
    "A section estimated past the time left is skipped, one that overruns stopped; both recorded."
    out = tmp_path / "gpu.json"
    st = bench_gpu(out, budget_s=1, device="cpu", log=quiet, **TINY)
    names = [f"train {m}, {'compiled' if c else 'eager'}" + (", checkpointed" if k else "")
             for m, c, k in GPU_TRAIN_CONFIGS]
    assert [r["section"] for r in st["skipped"]] == ["sine op", *names, "generate"]
    assert all("of the budget left" in r["reason"] for r in st["skipped"])
    assert st["train"] == []
    assert all(g["measured"] is None and g["passed"] is None for g in st["goals"])
    assert json.loads(out.read_text())["results"][0]["finished"] is True
    # the sine section, estimated at 0 s, runs for seconds: the alarm stops it at the budget's end
    slow = dict(TINY, sine_s=0, sine_shape=(8, 256, 1024), sine_runs=50)
    st = bench_gpu(out, budget_s=0.3, device="cpu", peak_flops=1e11, log=quiet, **slow)
    assert st["skipped"][0]["section"] == "sine op" and st["sine"] == []
    assert "stopped by the wall-clock budget" in st["skipped"][0]["reason"]


def test_killed_run_keeps_finished_sections(tmp_path):
    "The JSON is rewritten after every section: an interrupted run leaves what it finished."
    out, seen = tmp_path / "gpu.json", []
    def log(msg):
        seen.append(msg)
        if len(seen) == 2: raise KeyboardInterrupt   # as if killed after the second section
    with pytest.raises(KeyboardInterrupt):
        bench_gpu(out, device="cpu", backend="eager", log=log, **TINY)
    st = json.loads(out.read_text())["results"][0]
    assert st["finished"] is False and len(st["sine"]) == 3 and len(st["train"]) == 1
    assert st["goals"][2]["measured"] == st["sine"][0]["vs_gelu"]


def test_bad_settings_write_nothing(tmp_path):
    out = tmp_path / "gpu.json"
    with pytest.raises(ValueError, match="prompt_len \\+ new_tokens must fit"):
        bench_gpu(out, device="cpu", seq_len=64)
    with pytest.raises(ValueError, match="unknown settings \\['width'\\]"):
        bench_gpu(out, device="cpu", width=3)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="needs a CUDA GPU"): bench_gpu(out)
    assert not out.exists()


REFUSALS = [(["gpu"], "psann_lm_bench gpu needs a CUDA GPU"),
            (["gpu", "--ablation"], "gpu --ablation needs a CUDA GPU"),
            (["gpu", "--budget", "0"], "--budget must be >= 1")]


@pytest.mark.parametrize("args, message", REFUSALS)
def test_cli_refuses_without_cuda(tmp_path, args, message):
    "`psann_lm_bench gpu` with no GPU visible: a clear message, a nonzero exit, nothing written."
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    out = tmp_path / "res" / "gpu.json"
    proc = subprocess.run([bench_script(), *args, "--out", str(out)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not out.parent.exists()
