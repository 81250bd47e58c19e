"""A window length whose activations cannot fit is refused before training starts, with an estimate of what it needs."""
import warnings

import pytest

from psann_lm import psannLM, psannLMDataPrep


def test_fit_refuses_a_window_that_cannot_fit(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = psannLMDataPrep(["a short text to train on", "and another one"], vocab_size=300, max_length=10**6,
                               cache_dir=tmp_path / "cache", progress=False)
    model = psannLM(base="respsann", d_model=32, n_layers=1, n_heads=4, vocab_size=data.vocab_size,
                    max_seq_len=10**6)
    with pytest.raises(ValueError, match=r"micro-batch of 8 × 1000000 tokens needs at least [\d,.]+ GiB"):
        model.fit(data, max_steps=1, progress=False, output_dir=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists(), "nothing is written for a refused run"


def test_the_script_refuses_it_before_reading_the_data(tmp_path):
    import subprocess, sys
    from pathlib import Path
    (tmp_path / "corpus.txt").write_text("one paragraph\n\nanother paragraph\n")
    (tmp_path / "run.yaml").write_text("model:\n  base: respsann\n  d_model: 32\n  n_layers: 1\n  n_heads: 4\n"
                                       "data:\n  sources: [corpus.txt]\n  cache_dir: cache\n"
                                       "train:\n  max_steps: 1\n  output_dir: out\n")
    script = str(Path(sys.executable).with_name("psann-lm-train"))
    proc = subprocess.run([script, "--config", "run.yaml", "data.max_length=1000000"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "data.max_length: a micro-batch of 8 × 1000000 tokens needs at least" in proc.stderr
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists(), "nothing prepared or written"
