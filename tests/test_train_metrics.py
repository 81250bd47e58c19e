"""Training throughput counts training time only (MFU per device: tests/test_accumulation.py, two processes)."""
import time
import warnings

import pytest
import torch

import psann_lm.trainer as trainer
from psann_lm.dataprep import default_corpus, psannLMDataPrep
from psann_lm.model import DecoderLM, ModelConfig
from psann_lm.trainer import TrainConfig, train

EVAL_S = 1000.0   # what one evaluation costs on the fake clock


class Clock:
    "time.perf_counter plus a jump of EVAL_S whenever an evaluation runs (so the test does not depend on real timing)."
    def __init__(self): self.offset = 0.0
    def perf_counter(self): return time.perf_counter() + self.offset


@pytest.fixture
def data(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return psannLMDataPrep(default_corpus()[:12], vocab_size=300, max_length=32, val_split=0.2,
                               cache_dir=tmp_path / "cache", progress=False)


def test_tokens_per_s_leaves_out_evaluation_and_checkpoints(data, tmp_path, monkeypatch):
    clock = Clock()
    real_evaluate, real_save = trainer.evaluate, trainer._save_checkpoint
    def slow_evaluate(*a, **kw):
        clock.offset += EVAL_S
        return real_evaluate(*a, **kw)
    def slow_save(*a, **kw):
        clock.offset += EVAL_S
        return real_save(*a, **kw)
    fake_time = type("T", (), dict(perf_counter=staticmethod(clock.perf_counter)))
    monkeypatch.setattr(trainer, "time", fake_time)
    monkeypatch.setattr(trainer, "evaluate", slow_evaluate)
    monkeypatch.setattr(trainer, "_save_checkpoint", slow_save)
    torch.manual_seed(0)
    net = DecoderLM(ModelConfig(vocab_size=data.vocab_size, d_model=32, n_layers=1, n_heads=4, max_seq_len=32))
    cfg = TrainConfig(max_steps=6, batch_size=2, log_interval=1, eval_interval=2, save_interval=3, lr=1e-3,
                      output_dir=str(tmp_path / "run"), progress=False, peak_flops=1e12)
    res = train(net, data, cfg)
    steps = [r for r in res["history"] if "loss" in r]
    evals = [r for r in res["history"] if "val_loss" in r]
    assert len(steps) == 6 and len(evals) >= 3
    assert all(r["eval_s"] >= EVAL_S for r in evals), "evaluation time is logged with each evaluation"
    for r in steps:   # each step is far under EVAL_S of real time: had a pause been counted, its rate would collapse
        assert r["train_s"] < EVAL_S / 2, f"step {r['step']}: train_s={r['train_s']:.1f} counts an evaluation or a save"
        assert r["tokens_per_s"] > 2 * 32 / (EVAL_S / 2), f"step {r['step']}: {r['tokens_per_s']:.2f} tokens/s"
    assert steps[-1]["elapsed_s"] >= 3 * EVAL_S, "wall clock still counts everything"
