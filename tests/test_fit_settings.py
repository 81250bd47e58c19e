"""psannLM.fit honours every TrainConfig field: each is passed and its effect observed."""
import json
import math
import warnings
from pathlib import Path
from dataclasses import fields

import pytest
import torch

from psann_lm import psannLM, psannLMDataPrep
from psann_lm.dataprep import default_corpus
from psann_lm.trainer import TrainConfig, checkpoints, lr_at


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return psannLMDataPrep(default_corpus()[:6], vocab_size=300, max_length=16, val_split=0.3, cache_dir=tmp_path_factory.mktemp("c"), progress=False)


def fit(data, **kw):
    torch.manual_seed(0)
    m = psannLM(base="respsann", d_model=16, n_layers=1, n_heads=2)
    kw = {"progress": False, "peak_flops": 1e12, "batch_size": 4, "max_steps": 6, **kw}
    if "epochs" in kw or "batch_tokens" in kw: kw.pop("max_steps", None)
    if "batch_tokens" in kw: kw.pop("batch_size")
    m.fit(data, **kw)
    return m, m.last_fit


def train_recs(res): return [r for r in res["history"] if "loss" in r]
def val_recs(res): return [r for r in res["history"] if "val_loss" in r]


def test_every_field_is_covered():
    assert {f.name for f in fields(TrainConfig)} == set(CHECKS) | {"resume"}, "a TrainConfig field without an effect test"


def steps_per_epoch(data, bs): return math.ceil(len(data.dataset) / bs)

CHECKS = {
    "epochs": (dict(epochs=2), lambda d, m, r: r["steps"] == 2 * steps_per_epoch(d, 4)),
    "max_steps": (dict(max_steps=3), lambda d, m, r: r["steps"] == 3),
    "batch_tokens": (dict(batch_tokens=128, epochs=1), lambda d, m, r: r["steps"] == steps_per_epoch(d, 128 // 16)),
    "batch_size": (dict(batch_size=2, epochs=1), lambda d, m, r: r["steps"] == steps_per_epoch(d, 2)),
    # the lr logged at step s is the one step s used: lr_at(s - 1, ...)
    "lr": (dict(lr=5e-3, warmup_steps=0, log_interval=1), lambda d, m, r: math.isclose(train_recs(r)[1]["lr"], lr_at(1, 6, 5e-3, 5e-4, 0), rel_tol=1e-9)),
    "min_lr": (dict(min_lr=1e-5, warmup_steps=0, log_interval=1), lambda d, m, r: math.isclose(train_recs(r)[-1]["lr"], lr_at(5, 6, 3e-4, 1e-5, 0), rel_tol=1e-9)),
    "warmup_steps": (dict(warmup_steps=3, log_interval=1), lambda d, m, r: all(math.isclose(t["lr"], lr_at(i, 6, 3e-4, 3e-5, 3), rel_tol=1e-9) for i, t in enumerate(train_recs(r)))),
    "weight_decay": (dict(weight_decay=0.5, lr=1e-2), lambda d, m, r: not torch.allclose(m.net.embed.weight, fit(d, weight_decay=0.0, lr=1e-2)[0].net.embed.weight)),
    "betas": (dict(betas=(0.5, 0.6)), lambda d, m, r: not torch.allclose(m.net.embed.weight, fit(d)[0].net.embed.weight)),
    "grad_clip": (dict(grad_clip=1e-3, log_interval=1), lambda d, m, r: not torch.allclose(m.net.embed.weight, fit(d, grad_clip=None)[0].net.embed.weight)),
    "grad_accum_steps": (dict(grad_accum_steps=2, epochs=1), lambda d, m, r: r["steps"] == math.ceil(steps_per_epoch(d, 4) / 2)),
    "amp": (dict(amp="bf16"), lambda d, m, r: not torch.allclose(m.net.embed.weight, fit(d)[0].net.embed.weight)),
    "grad_checkpoint": (dict(grad_checkpoint=True), lambda d, m, r: m.net.config.grad_checkpoint and torch.allclose(m.net.embed.weight, fit(d)[0].net.embed.weight, atol=1e-6)),
    "eval_interval": (dict(eval_interval=2), lambda d, m, r: [v["step"] for v in val_recs(r)] == [2, 4, 6]),
    "eval_tokens": (dict(eval_tokens=1), lambda d, m, r: val_recs(r)[-1]["val_tokens"] < fit(d)[1]["eval"]["tokens"]),
    "log_interval": (dict(log_interval=3), lambda d, m, r: [t["step"] for t in train_recs(r)] == [3, 6]),
    "save_interval": (dict(save_interval=2, output_dir="OUT", keep_last=5), lambda d, m, r: [p.name for p in checkpoints(r["output_dir"])] == ["step_00000002", "step_00000004", "step_00000006"]),
    "keep_last": (dict(save_interval=1, output_dir="OUT", keep_last=2), lambda d, m, r: [p.name for p in checkpoints(r["output_dir"])] == ["step_00000005", "step_00000006"]),
    "output_dir": (dict(output_dir="OUT"), lambda d, m, r: len((__import__("pathlib").Path(r["output_dir"]) / "metrics.jsonl").read_text().splitlines()) == 2),
    "seed": (dict(seed=7), lambda d, m, r: not torch.allclose(m.net.embed.weight, fit(d)[0].net.embed.weight)),
    "num_workers": (dict(num_workers=2), lambda d, m, r: torch.equal(m.net.embed.weight, fit(d)[0].net.embed.weight)),
    # compiled in one graph, the same losses as eager (to float32 rounding)
    "compile": (dict(compile=True, max_steps=3, log_interval=1), lambda d, m, r: len(train_recs(r)) == 3
        and torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1 and all(
        abs(a["loss"] - b["loss"]) <= 1e-4 for a, b in zip(train_recs(r), train_recs(fit(d, max_steps=3, log_interval=1)[1])))),
    "tf32": (dict(tf32=False), lambda d, m, r: torch.equal(m.net.embed.weight, fit(d)[0].net.embed.weight)),   # a CPU has no TF32: same numbers
    "log_with": (dict(log_with="tensorboard", output_dir="OUT"), lambda d, m, r: any((Path(r["output_dir"]) / "psann_lm").glob("events.out.tfevents.*"))),
    "ddp": (dict(ddp="no"), lambda d, m, r: r["steps"] == 6),
    "fsdp": (dict(fsdp=True), None),
    "peak_flops": (dict(peak_flops=2e12, log_interval=1), lambda d, m, r: abs(train_recs(r)[0]["mfu"] * 2e12 / train_recs(r)[0]["tokens_per_s"] - m.net.flops_per_token(16)) < 1),
    "progress": (dict(progress=True, max_steps=2), lambda d, m, r: r["steps"] == 2),
}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_field_has_its_effect(name, data, tmp_path, capsys):
    kw, check = CHECKS[name]
    kw = {k: (str(tmp_path / "out") if v == "OUT" else v) for k, v in kw.items()}
    if name == "log_with": pytest.importorskip("tensorboard")
    if name == "fsdp":
        with pytest.raises(ValueError, match="fsdp=True, but this run has 1 process"): fit(data, **kw)   # 2 processes: tests/test_fsdp.py
        return
    m, r = fit(data, **kw)
    assert check(data, m, r), f"{name}={kw[name]!r} had no visible effect: {json.dumps(r['last'], default=str)[:300]}"
    if name == "progress": assert "training" in capsys.readouterr().err


def test_resume_from_an_explicit_checkpoint_path(data, tmp_path):
    out = tmp_path / "run"
    _, first = fit(data, max_steps=4, save_interval=2, output_dir=str(out), keep_last=5)
    mid = checkpoints(out)[0]
    assert mid.name == "step_00000002"
    m, resumed = fit(data, max_steps=4, output_dir=str(tmp_path / "other"), resume=str(mid))
    assert resumed["resumed_from"] == str(mid) and resumed["steps"] == 4
    straight, _ = fit(data, max_steps=4)
    assert all(torch.equal(a, b) for a, b in zip(m.net.state_dict().values(), straight.net.state_dict().values()))


def test_second_fit_continues_with_new_settings(data):
    torch.manual_seed(0)
    m = psannLM(base="respsann", d_model=16, n_layers=1, n_heads=2)
    m.fit(data, max_steps=3, batch_size=4, progress=False, peak_flops=1e12, log_interval=1)
    after_first = m.net.embed.weight.detach().clone()
    m.fit(data, max_steps=2, batch_size=2, lr=1e-2, warmup_steps=0, progress=False, peak_flops=1e12, log_interval=1)
    steps = [r["step"] for r in m.history if "loss" in r]
    assert steps == [1, 2, 3, 1, 2], "the history holds both fits"
    assert math.isclose([r["lr"] for r in m.history if "loss" in r][3], 1e-2, rel_tol=1e-9)
    assert not torch.equal(after_first, m.net.embed.weight), "the second fit starts from the first one's weights and moves them"
