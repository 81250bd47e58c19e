"""Faults, on the CPU: a training process killed (SIGKILL) at 20 random moments, during steps and during checkpoint writes,
resumes each time from a checkpoint equal to the uninterrupted run's and ends with its very weights; an interrupted
checkpoint write is never taken for the latest; a non-finite loss stops the run naming the step, with the last good
checkpoint kept; and of two processes, the one left stops with a clear error, within a bounded time, when the other dies
or hangs. (A data preparation killed midway is covered by test_dataprep.py::test_killed_preparation_is_never_taken_for_complete.)"""
import json
import math
import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import fault_driver
from psann_lm import psannLM
from psann_lm.trainer import checkpoints

DRIVER = Path(fault_driver.__file__)
STEPS = 150          # optimizer steps of the run (about 7 epochs of the driver's 88 windows at batch size 4)
KILLS = 20


class Driver:
    "A fault_driver.py process whose stdout lines are read as they come."
    def __init__(self, mode, cache, out, steps, log: Path, env=None):
        self.log = open(log, "ab")
        self.proc = subprocess.Popen([sys.executable, str(DRIVER), mode, str(cache), str(out), str(steps)], stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout: self.lines.put(line.split())
        self.lines.put(None)

    def wait_for(self, want, timeout=120):
        "The first line (as words) for which `want(words)` holds; None if the process ends first."
        deadline = time.monotonic() + timeout
        while True:
            try: words = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty: raise TimeoutError(f"no matching line from the driver in {timeout} s; see {self.log.name}") from None
            if words is None: return None
            if words and want(words): return words

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def finish(self):
        if self.proc.poll() is None: self.signal(signal.SIGKILL)
        self.proc.wait(); self.log.close()


def step_of(ckpt) -> int: return int(Path(ckpt).name.split("_")[1])


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    "Data prepared once, before any driver starts, so that drivers only read the cache."
    path = tmp_path_factory.mktemp("fault_cache")
    fault_driver.prepare(path)
    return path


@pytest.fixture(scope="module")
def chain(cache, tmp_path_factory):
    "An uninterrupted reference run, then one run killed 20 times at random moments and resumed after each kill."
    root = tmp_path_factory.mktemp("faults")
    ref = Driver("reference", cache, root / "ref", STEPS, root / "ref.log")
    digests, times = {}, []
    while (words := ref.wait_for(lambda w: w[0] in ("digest", "done"))) and words[0] == "digest":
        digests[int(words[1])] = words[2]; times.append(time.monotonic())
    ref.finish()
    assert sorted(digests) == list(range(1, STEPS + 1)), f"the reference run did not finish; see {root / 'ref.log'}"
    step_s = (times[-1] - times[0]) / (len(times) - 1)      # this machine's step, checkpoint included: kill delays scale with it

    rng = random.Random(20240917)
    kinds = ["step"] * 8 + ["save-write"] * 6 + ["save-commit"] * 6      # where each kill is aimed; the moment itself is random
    rng.shuffle(kinds)
    out, events, expected = root / "run", [], None
    for i, kind in enumerate(kinds):
        d = Driver("chain", cache, out, STEPS, root / f"chain{i}.log", env={"FAULT_SAVE_PAUSE": "0.3" if kind == "save-commit" else "0"})
        try:
            first = d.wait_for(lambda w: w[0] in ("loaded", "step"))
            loaded = first[1] if first and first[0] == "loaded" else None
            assert d.wait_for(lambda w: w[0] == "step"), f"segment {i} ended before its first step; see {root / f'chain{i}.log'}"
            if kind == "step": time.sleep(rng.uniform(0, 5 * step_s))                 # anywhere: a step, a log line, a save
            elif kind == "save-write": d.wait_for(lambda w: w[0] == "save-start"); time.sleep(rng.uniform(0, 0.01))   # while files are written
            else: d.wait_for(lambda w: w[0] == "save-written"); time.sleep(rng.uniform(0, 0.25))  # before the checkpoint is committed
            assert d.proc.poll() is None, f"segment {i} finished the run before its kill: make STEPS larger"
            d.signal(signal.SIGKILL)
        finally:
            d.finish()
        ckpts = checkpoints(out)
        latest = ckpts[-1]
        events.append(dict(kind=kind, loaded=loaded, expected=str(expected) if expected else None, latest=str(latest), step=step_of(latest),
                           matches=fault_driver.digest(latest) == digests[step_of(latest)],
                           left=sorted(p.name for p in (out / "checkpoints").glob(".tmp-*"))))
        expected = latest
    last = Driver("chain", cache, out, STEPS, root / "last.log")
    try:
        first = last.wait_for(lambda w: w[0] in ("loaded", "step"))
        done = last.wait_for(lambda w: w[0] == "done", timeout=300)
    finally:
        last.finish()
    return dict(root=root, out=out, events=events, digests=digests, last_loaded=first[1] if first[0] == "loaded" else None,
                expected_last=str(expected), done=done)


def test_killed_20_times_resumes_to_the_uninterrupted_weights(chain):
    events, out = chain["events"], chain["out"]
    survived = [e["matches"] and e["loaded"] == e["expected"] for e in events]
    print(f"\nkill -9 and resume: {sum(survived)}/{len(events)} survived; kills aimed at "
          + ", ".join(f"{k}: {sum(e['kind'] == k for e in events)}" for k in ("step", "save-write", "save-commit"))
          + f"; {sum(bool(e['left']) for e in events)} interrupted a checkpoint write; resumed at steps {[e['step'] for e in events]}")
    assert len(events) == KILLS
    for i, e in enumerate(events):
        assert e["loaded"] == e["expected"], f"segment {i} resumed from {e['loaded']}, not the latest complete checkpoint {e['expected']}"
        assert e["matches"], f"after kill {i} ({e['kind']}) the checkpoint {e['latest']} differs from the uninterrupted run's at step {e['step']}"
    assert chain["last_loaded"] == chain["expected_last"] and chain["done"][1] == str(STEPS)
    assert [e["step"] for e in events] != [events[0]["step"]] * KILLS, "the run must make progress between kills"
    final, ref = load_file(out / "final.safetensors"), load_file(chain["root"] / "ref" / "final.safetensors")
    assert final.keys() == ref.keys() and all(torch.equal(final[k], ref[k]) for k in ref), "final weights differ from the uninterrupted run's"
    assert fault_driver.digest(checkpoints(out)[-1]) == chain["digests"][STEPS]
    logged = [json.loads(l)["step"] for l in (out / "metrics.jsonl").read_text().splitlines() if "loss" in json.loads(l)]
    assert logged == list(range(1, STEPS + 1)), "metrics.jsonl must hold every step once, whatever the kills"


def test_interrupted_checkpoint_write_is_never_taken_for_the_latest(chain):
    hit = [e for e in chain["events"] if e["left"]]
    assert len(hit) >= 4, f"too few kills landed inside a checkpoint write: {[e['kind'] for e in chain['events']]}"
    for e in hit:
        partial = [step_of(n.removeprefix(".tmp-")) for n in e["left"] if n.startswith(".tmp-step_")]
        assert all(p > e["step"] for p in partial), f"a partial checkpoint {e['left']} is newer than the one taken ({e['latest']})"
        assert e["matches"]


def test_incomplete_checkpoint_directories_are_skipped(chain, cache, tmp_path):
    "A step_* directory without its psann_state.json (a copy or deletion cut short) and a .tmp- one are not resumed from."
    run = tmp_path / "run" / "checkpoints"
    good = shutil.copytree(checkpoints(chain["out"])[-2], run / "step_00000010")
    partial = shutil.copytree(good, run / "step_00000011"); (partial / "psann_state.json").unlink()
    shutil.copytree(good, run / ".tmp-step_00000012")
    assert checkpoints(tmp_path / "run") == [good]
    data = fault_driver.prepare(cache)
    torch.manual_seed(0)
    m = psannLM(base="waveresnet", d_model=32, n_layers=2, n_heads=4, vocab_size=data.vocab_size, max_seq_len=16)
    m.fit(data, max_steps=STEPS, batch_size=4, lr=3e-3, output_dir=str(tmp_path / "run"), resume=True, progress=False, peak_flops=1e12)
    assert m.last_fit["resumed_from"] == str(good) and m.last_fit["steps"] == STEPS


def test_non_finite_loss_stops_with_the_step_named_and_the_last_good_checkpoint_kept(cache, tmp_path):
    data = fault_driver.prepare(cache)
    out = tmp_path / "run"
    def model():
        torch.manual_seed(0)
        return psannLM(base="respsann", d_model=16, n_layers=1, n_heads=2, vocab_size=data.vocab_size, max_seq_len=16)
    m, forwards = model(), [0]
    m.net.register_forward_pre_hook(lambda mod, args: forwards.__setitem__(0, forwards[0] + mod.training))
    m.net.head.register_forward_hook(lambda mod, args, y: y * float("nan") if forwards[0] >= 8 else y)   # gradients turn NaN too
    settings = dict(max_steps=12, batch_size=4, save_interval=3, keep_last=5, log_interval=1, output_dir=str(out), progress=False, peak_flops=1e12)
    with pytest.raises(FloatingPointError, match=r"non-finite training loss \(nan\) at step 8; the last good checkpoint is .*step_00000006"):
        m.fit(data, **settings)
    assert [c.name for c in checkpoints(out)] == ["step_00000003", "step_00000006"]
    assert all(torch.isfinite(t).all() for t in load_file(checkpoints(out)[-1] / "model.safetensors").values())
    logged = [json.loads(l)["step"] for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(1, 8)), "the non-finite step is not logged"
    resumed = model().fit(data, **settings, resume="auto")               # the run continues from the good checkpoint
    assert resumed.last_fit["resumed_from"].endswith("step_00000006") and resumed.last_fit["completed"]
    assert math.isfinite(resumed.last_fit["last"]["loss"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("how", ["killed", "hung"])
def test_the_other_process_stops_with_a_clear_error(how, cache, tmp_path):
    "Two CPU processes (gloo), each started as a multi-node launcher starts it; one is killed (SIGKILL) or hangs (SIGSTOP)."
    timeout = 15
    env = dict(WORLD_SIZE="2", LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), PSANN_LM_DIST_TIMEOUT=str(timeout))
    ranks = [Driver("ddp", cache, tmp_path / "out", 100_000, tmp_path / f"rank{r}.log", env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in (0, 1)]
    victim, survivor = (ranks[0], ranks[1]) if how == "killed" else (ranks[1], ranks[0])   # killing rank 0 also takes the rendezvous store
    try:
        assert victim.wait_for(lambda w: w[0] == "rank" and int(w[3]) >= 3), f"training did not start; see {tmp_path}/rank*.log"
        t0 = time.monotonic()
        victim.signal(signal.SIGKILL if how == "killed" else signal.SIGSTOP)
        try: survivor.proc.wait(timeout=timeout + 60)
        except subprocess.TimeoutExpired: pytest.fail(f"the other process still runs {timeout + 60} s after its peer {how}")
        elapsed = time.monotonic() - t0
    finally:
        for r in ranks: r.finish()
    err = (tmp_path / f"rank{ranks.index(survivor)}.log").read_text()
    print(f"\n{how}: the other process exited with status {survivor.proc.returncode} after {elapsed:.1f} s: {err.strip().splitlines()[-1][:300]}")
    assert survivor.proc.returncode != 0
    assert f"LostProcessError: process {ranks.index(survivor)} of 2 lost contact with the others during step" in err
    assert f"PSANN_LM_DIST_TIMEOUT={timeout} s" in err and "relaunch every process with resume='auto'" in err
    if how == "killed": assert elapsed < timeout, "a dead peer is noticed when its connection breaks, before any timeout"
    else: assert timeout * 0.5 <= elapsed <= timeout + 30, "a hung peer is given up on after PSANN_LM_DIST_TIMEOUT"
