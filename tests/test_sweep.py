"""The sine sweep (`psann_lm_bench sweep`): bad settings refused before any work; resumable."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from psann_lm.benchmarks import sweep

TINY = dict(corpora=("stdlib bytes",), freqs=(1, 4), bases=("respsann",),
            refs=("respsann + GELU",), lrs=(2e-3,), seeds=2, steps=2, batch=8, seq_len=64,
            d_model=16, n_layers=1, n_heads=2,
            init_grid=dict(amp_init=(2.0,)), widths=(32,), width_freqs=(4,))


class Interrupted(Exception): pass


def test_sweep_resumes_after_an_interruption(tmp_path):
    out, seen = tmp_path / "sine_sweep.json", []
    def stop_after_two(msg):
        seen.append(msg)
        if len(seen) == 2: raise Interrupted()
    with pytest.raises(Interrupted): sweep(out, log=stop_after_two, **TINY)
    first = json.loads(out.read_text())["results"][0]["runs"]
    assert len(first) == 2
    logged = []
    state = sweep(out, log=logged.append, **TINY)
    # 2 freqs x (trainable, frozen) + GELU = 5; seed 1 at the seeded points; 1 init, 1 width
    assert len(state["runs"]) == 5 + len(state["seeded"]) + 2
    assert len(logged) == len(state["runs"]) - 2, "the two finished runs are not run again"
    assert state["runs"][:2] == first
    assert {r["stage"] for r in state["runs"]} == {"freq", "seeds", "init", "width"}
    assert all("mechanism" in r for r in state["runs"])
    again = []
    assert sweep(out, log=again.append, **TINY)["runs"] == state["runs"] and again == []


BAD = [(dict(freqs=(2, 4), width_freqs=(4,)), "freqs must include 1"),
       (dict(corpora=("wikitext",)), "corpora must be among"),
       (dict(width_freqs=(3,)), "must be among freqs"),
       (dict(freqs=(1, 4, -2.0)), "freq_init must be"),
       (dict(bases=("waveresnet",)), "bases must include respsann")]


@pytest.mark.parametrize("change, message", BAD)
def test_sweep_refuses_bad_settings_before_work(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        sweep(tmp_path / "s.json", log=print, **{**TINY, **change})
    assert not (tmp_path / "s.json").exists()


def test_bench_cli_has_sweep(tmp_path):
    exe = Path(sys.executable).parent / "psann_lm_bench"
    if not exe.exists(): pytest.skip("psann_lm_bench is not installed (pip install -e .)")
    proc = subprocess.run([str(exe), "sweep", "--steps", "0", "--out", str(tmp_path / "s.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "--steps must be >= 1, got 0" in proc.stderr
    assert not (tmp_path / "s.json").exists()
