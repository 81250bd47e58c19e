"""The console scripts installed with the package."""
import json
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
                                           (["sine", "--shape", "8,x"], "--shape must be comma-separated integers")])
def test_bench_bad_arguments(tmp_path, args, message):
    proc = subprocess.run([script("psann_lm_bench"), *args, "--out", str(tmp_path / "r.json")], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and message in proc.stderr
    assert not (tmp_path / "r.json").exists()


def test_demo_runs():
    proc = subprocess.run([script("psann_lm_demo"), "--runs", "1"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "max error" in proc.stdout and "| float32 | fused sine |" in proc.stdout
