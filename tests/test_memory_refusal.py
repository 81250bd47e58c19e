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
