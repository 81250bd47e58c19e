"""What a run leaves for its user: tracker logs through any tracker accelerate knows (TensorBoard's event
files read back), `loss.png` with both curves, and tokens/s on the progress bar."""
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.tracking import LOGGER_TYPE_TO_CLASS, GeneralTracker, register_tracker_class

from psann_lm import psannLM, psannLMDataPrep
from psann_lm.cli import load_config
from psann_lm.dataprep import default_corpus
from psann_lm.trainer import TrainConfig, plot_loss, save_loss_plot, trackers

EventAccumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator").EventAccumulator


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return psannLMDataPrep(default_corpus()[:8], vocab_size=300, max_length=16, val_split=0.3,
                               cache_dir=tmp_path_factory.mktemp("c"), progress=False)


def fit(data, **kw):
    torch.manual_seed(0)
    m = psannLM(base="respsann", d_model=16, n_layers=1, n_heads=2)
    return m.fit(data, **{"progress": False, "peak_flops": 1e12, "batch_size": 4, "max_steps": 4, "log_interval": 2, **kw})


def test_tensorboard_gets_every_record(data, tmp_path):
    m = fit(data, log_with="tensorboard", output_dir=str(tmp_path), eval_interval=2)
    events = EventAccumulator(str(tmp_path / "psann_lm")).Reload()      # accelerate's logging dir: output_dir
    train = [r for r in m.history if "loss" in r]
    val = [r for r in m.history if "val_loss" in r]
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(r["step"], pytest.approx(r["loss"])) for r in train]
    assert [e.step for e in events.Scalars("val_loss")] == [r["step"] for r in val] == [2, 4]
    assert {"lr", "grad_norm", "tokens_per_s", "perplexity"} <= set(events.Tags()["scalars"])


class Memory(GeneralTracker):
    "A tracker of our own, registered with accelerate by name: it keeps what it is given."
    name, requires_logging_directory, seen = "memory_for_tests", False, []
    def __init__(self, run_name, **kw): super().__init__()
    @property
    def tracker(self): return self.seen
    def log(self, values, step=None, **kw): self.seen.append((step, values))


def test_any_tracker_accelerate_knows_is_passed_through(data):
    register_tracker_class(Memory)
    try:
        assert trackers()["memory_for_tests"] is True
        m = fit(data, log_with=["memory_for_tests"])                      # needs no directory
        assert [(s, v["loss"]) for s, v in Memory.seen if "loss" in v] == [(r["step"], r["loss"]) for r in m.history if "loss" in r]
    finally:
        LOGGER_TYPE_TO_CLASS.pop("memory_for_tests", None)


def test_unknown_or_unusable_trackers_are_refused_before_any_work(data, tmp_path):
    out = tmp_path / "run"
    missing = next((n for n, ok in trackers().items() if not ok), None)
    cases = [(dict(log_with="tensorbord", output_dir=str(out)), "unknown tracker 'tensorbord'; accelerate knows"),
             (dict(log_with=["tensorboard", "nope"], output_dir=str(out)), "unknown tracker 'nope'"),
             (dict(log_with="tensorboard"), "['tensorboard'] write their logs into output_dir, which is not set"),
             (dict(log_with="all"), "write their logs into output_dir"),
             (dict(log_with=3), "log_with must be a tracker name, a list of them, or None, got 3")]
    if missing: cases.append((dict(log_with=missing, output_dir=str(out)), f"needs the {missing} package, which is not installed"))
    for kw, says in cases:
        with pytest.raises(ValueError, match=says.replace("[", r"\[").replace("]", r"\]")):
            fit(data, **kw)
        assert not out.exists(), f"{kw}: nothing may be written before the refusal"


def test_yaml_takes_tracker_names(tmp_path):
    cfg = load_config(None, ["train.log_with=[tensorboard]", f"train.checkpoint_dir={tmp_path}"])
    assert TrainConfig.from_dict(cfg["train"]).log_with == ["tensorboard"]
    with pytest.raises(ValueError, match=r"train\.log_with: unknown tracker 'tensorbord'"):
        load_config(None, ["train.log_with=tensorbord"])


C0, C1 = np.array([31, 119, 180]) / 255, np.array([255, 127, 14]) / 255   # matplotlib's first two line colours


def drawn(png: Path, colour) -> int:
    "Pixels of `png` within a few levels of `colour`."
    import matplotlib.pyplot as plt
    img = plt.imread(png)[..., :3]
    return int((np.abs(img - colour).max(-1) < 0.02).sum())


def test_fit_writes_loss_png_with_both_curves(data, tmp_path):
    m = fit(data, output_dir=str(tmp_path), eval_interval=2)
    png = tmp_path / "loss.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert drawn(png, C0) > 100 and drawn(png, C1) > 100, "a training and a validation curve"
    assert [l.get_label() for l in plot_loss(tmp_path).lines] == ["train", "validation"]
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file left behind"


def test_loss_png_only_where_asked(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fit(data)                                                            # no output_dir: nothing written
    assert list(tmp_path.iterdir()) == []
    recs = [dict(step=1, loss=3.0), dict(step=2, loss=2.5)]             # a training curve alone: one colour
    save_loss_plot(recs, tmp_path / "only_train.png")
    assert drawn(tmp_path / "only_train.png", C0) > 100 and drawn(tmp_path / "only_train.png", C1) == 0


def test_loss_png_of_a_resumed_run_covers_all_its_steps(data, tmp_path):
    fit(data, output_dir=str(tmp_path), max_steps=2, log_interval=1)
    fit(data, output_dir=str(tmp_path), max_steps=4, log_interval=1, resume=True)
    steps = [int(x) for x in plot_loss(tmp_path).lines[0].get_xdata()]
    assert steps == [1, 2, 3, 4]


def test_progress_bar_shows_tokens_per_second(data, capsys):
    fit(data, progress=True, max_steps=3, log_interval=1)
    err = capsys.readouterr().err
    assert "tokens/s=" in err and "loss=" in err, err[-500:]


TINY_RUN = """\
model: {base: respsann, d_model: 32, n_layers: 1, n_heads: 2, vocab_size: 300}
data: {sources: [corpus.txt], doc_sep: "\\n\\n", max_length: 16, cache_dir: cache, val_split: 0.2}
train: {max_steps: 4, batch_size: 2, log_interval: 2, output_dir: out, progress: false, log_with: tensorboard}
"""


def test_cli_writes_loss_png_and_tensorboard_logs(tmp_path):
    exe = Path(sys.executable).parent / "psann-lm-train"
    if not exe.exists(): exe = shutil.which("psann-lm-train")
    if exe is None: pytest.skip("psann-lm-train is not installed (pip install -e . installs it)")
    (tmp_path / "corpus.txt").write_text("\n\n".join(f"Document {i}: a fox jumps over a dog {i % 7} times." for i in range(200)))
    (tmp_path / "run.yaml").write_text(TINY_RUN)
    proc = subprocess.run([str(exe), "--config", "run.yaml"], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out"
    assert drawn(out / "loss.png", C0) > 100 and drawn(out / "loss.png", C1) > 0
    assert [e.step for e in EventAccumulator(str(out / "psann_lm")).Reload().Scalars("loss")] == [2, 4]
