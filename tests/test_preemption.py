"""Pre-emption, integrity and changed runs, on the CPU: a run stopped by SIGTERM or SIGINT finishes its step, saves it,
says so in one line and exits 143 or 130 with no traceback, and a relaunch with resume='auto' ends with the weights of
the run that was never stopped (one process, 6 random moments; two processes, 2); a second signal ends the process at
once; a checkpoint write that fails (a file-size limit, as on a full disk) leaves the previous checkpoint to resume
from; one of two processes killed (SIGKILL) at 3 random moments, both relaunched, ends as the uninterrupted two-process
run; a damaged latest checkpoint is skipped for the one before it; a resume with another model, tokenizer or data is
refused before any step."""
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import warnings

import pytest
import torch
from safetensors.torch import load_file

import fault_driver
from psann_lm import psannLM, psannLMDataPrep
from psann_lm.trainer import TrainingStopped, checkpoints
from test_cli import script
from test_faults import Driver, free_port, step_of

STEPS = 200          # optimizer steps of the one-process runs (a step of the driver's tiny model takes ~15 ms)
DDP_STEPS = 100      # of the two-process runs


def same_weights(a, b) -> bool:
    a, b = load_file(a), load_file(b)
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def finish_lines(d: Driver) -> list:
    "The driver's remaining stdout lines (as words), until it exits."
    lines = []
    while (words := d.wait_for(lambda w: True, timeout=120)) is not None: lines.append(words)
    return lines


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("preempt_cache")
    fault_driver.prepare(path)
    return path


@pytest.fixture(scope="module")
def reference(cache, tmp_path_factory):
    "An uninterrupted one-process run (checkpoints only at the end) and this machine's time per step."
    root = tmp_path_factory.mktemp("preempt_ref")
    d = Driver("plain", cache, root / "out", STEPS, root / "ref.log", env={"FAULT_SAVE_INTERVAL": "0"})
    times = []
    while (words := d.wait_for(lambda w: w[0] in ("step", "done"))) and words[0] == "step": times.append(time.monotonic())
    d.finish()
    assert len(times) == STEPS, f"the reference run did not finish; see {root / 'ref.log'}"
    return dict(final=root / "out" / "final.safetensors", step_s=(times[-1] - times[0]) / (len(times) - 1))


# ------------------------------------------------------------------------------------------------- one process, stopped

@pytest.fixture(scope="module")
def stops(cache, reference, tmp_path_factory):
    "One run stopped 6 times (5 SIGTERM, one of them sent twice at once as a launcher forwards it; 1 SIGINT), relaunched after each."
    root = tmp_path_factory.mktemp("stops")
    rng = random.Random(17)
    kinds = ["SIGTERM"] * 5 + ["SIGINT"]
    rng.shuffle(kinds)
    twice = kinds.index("SIGTERM")
    out, events, expected = root / "run", [], None
    for i, kind in enumerate(kinds):
        log = root / f"seg{i}.log"
        d = Driver("chain", cache, out, STEPS, log, env={"FAULT_SAVE_INTERVAL": "0"})
        try:
            first = d.wait_for(lambda w: w[0] in ("loaded", "step"))
            loaded = first[1] if first and first[0] == "loaded" else None
            seen = d.wait_for(lambda w: w[0] == "step")
            assert seen, f"segment {i} ended before its first step; see {log}"
            time.sleep(rng.uniform(0, 20 * reference["step_s"]))
            assert d.proc.poll() is None, f"segment {i} finished the run before its signal: make STEPS larger"
            d.signal(getattr(signal, kind))
            if i == twice:
                time.sleep(0.02)
                d.signal(signal.SIGTERM)
            t0 = time.monotonic()
            steps = [int(w[1]) for w in finish_lines(d) if w[0] == "step"]
            code = d.proc.wait(timeout=60)
            exit_s = time.monotonic() - t0
        finally:
            d.finish()
        latest = checkpoints(out)[-1] if checkpoints(out) else None
        events.append(dict(kind=kind, twice=i == twice, code=code, exit_s=exit_s, loaded=loaded, expected=expected,
                           last_step=(steps or [int(seen[1])])[-1], latest=latest, stderr=log.read_text()))
        expected = str(latest) if latest else None
    d = Driver("chain", cache, out, STEPS, root / "last.log", env={"FAULT_SAVE_INTERVAL": "0"})
    try:
        first = d.wait_for(lambda w: w[0] in ("loaded", "step"))
        done = d.wait_for(lambda w: w[0] == "done", timeout=300)
    finally:
        d.finish()
    return dict(out=out, events=events, last_loaded=first[1] if first[0] == "loaded" else None, expected_last=expected, done=done)


def test_signals_stop_after_the_step_with_one_line_and_resume_exactly(stops, reference):
    events, out = stops["events"], stops["out"]
    ok = []
    for i, e in enumerate(events):
        status = 128 + getattr(signal, e["kind"])
        lines = [l for l in e["stderr"].splitlines() if l.strip()]
        ckpt = out / "checkpoints" / f"step_{e['last_step']:08d}"
        want = (f"training stopped by {e['kind']} after step {e['last_step']} of {STEPS}: checkpoint {ckpt}; relaunch "
                f"with resume='auto' (psann-lm-train: train.resume=auto) to continue (exit status {status})")
        checks = [e["code"] == status, "Traceback" not in e["stderr"], lines[-1:] == [want],
                  sum("training stopped" in l for l in lines) == 1, e["latest"] is not None and step_of(e["latest"]) == e["last_step"],
                  e["loaded"] == e["expected"]]
        ok.append(all(checks))
        assert e["code"] == status, f"stop {i} ({e['kind']}): exit status {e['code']}, not {status}:\n{e['stderr'][-2000:]}"
        assert "Traceback" not in e["stderr"], f"stop {i} printed a traceback:\n{e['stderr'][-2000:]}"
        assert lines[-1:] == [want], f"stop {i}: the last line is {lines[-1:]}, not {want!r}"
        assert all(checks), f"stop {i}: {checks}"
    where = ", ".join(e["kind"] + (" x2" if e["twice"] else "") + f" at step {e['last_step']}" for e in events)
    print(f"\nstopped by a signal and resumed: {sum(ok)}/{len(events)} survived ({where}); "
          f"exits took at most {max(e['exit_s'] for e in events):.2f} s after the signal")
    assert stops["last_loaded"] == stops["expected_last"] and stops["done"][1] == str(STEPS)
    assert len({e["last_step"] for e in events}) == len(events), "every segment must make progress"
    assert same_weights(out / "final.safetensors", reference["final"]), "final weights differ from the uninterrupted run's"
    logged = [json.loads(l)["step"] for l in (out / "metrics.jsonl").read_text().splitlines() if "loss" in json.loads(l)]
    assert logged == list(range(1, STEPS + 1)), "metrics.jsonl must hold every step once"


def test_a_second_signal_ends_the_process_at_once(cache, tmp_path):
    "A repeat more than a second after the first signal, while the stop's checkpoint is being written (made to linger 10 s)."
    out = tmp_path / "run"
    d = Driver("chain", cache, out, STEPS, tmp_path / "run.log", env={"FAULT_SAVE_INTERVAL": "0", "FAULT_SAVE_PAUSE": "10"})
    try:
        assert d.wait_for(lambda w: w[0] == "step" and int(w[1]) >= 3)
        d.signal(signal.SIGTERM)
        assert d.wait_for(lambda w: w[0] == "save-written"), "the stop wrote no checkpoint"
        time.sleep(1.5)
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        code = d.proc.wait(timeout=5)
        elapsed = time.monotonic() - t0
    finally:
        d.finish()
    assert code == -signal.SIGTERM and elapsed < 5, f"exit status {code} after {elapsed:.1f} s"
    assert checkpoints(out) == [], "the checkpoint being written must not be taken for a complete one"
    assert [p.name.startswith(".tmp-step_") for p in (out / "checkpoints").iterdir()] == [True]


# ------------------------------------------------------------------------------------------------- a write that fails

@pytest.mark.parametrize("limit", [16_000, 200_000], ids=["safetensors", "torch.save"])
def test_a_failed_checkpoint_write_keeps_the_previous_one_and_the_run_resumes(limit, cache, reference, tmp_path):
    """Files limited after step 5 (RLIMIT_FSIZE, as `ulimit -f`): the checkpoint of step 8 cannot be written (its weights,
    152 kB, or its optimizer state, 329 kB, whose writer names no cause)."""
    out, ckpts = tmp_path / "run", tmp_path / "run" / "checkpoints"
    env = {"FAULT_SAVE_INTERVAL": "4", "FAULT_FSIZE": f"5:{limit}"}
    d = Driver("chain", cache, out, STEPS, tmp_path / "full.log", env=env)
    try: code = d.proc.wait(timeout=120)
    finally: d.finish()
    err = (tmp_path / "full.log").read_text()
    print(f"\nfile-size limit: exit status {code}: {err.strip().splitlines()[-1][:400]}")
    assert code == 1
    assert (f"OSError: could not write the checkpoint {ckpts / '.tmp-step_00000008'}: file too large: a file reached "
            f"the size limit (ulimit -f) of {limit:,} bytes") in err
    assert f"It was removed; the previous checkpoint {ckpts / 'step_00000004'} is intact" in err
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_00000004"], "no partial checkpoint is left"
    d = Driver("chain", cache, out, STEPS, tmp_path / "again.log")
    try:
        first = d.wait_for(lambda w: w[0] in ("loaded", "step"))
        done = d.wait_for(lambda w: w[0] == "done", timeout=300)
    finally:
        d.finish()
    assert first == ["loaded", str(ckpts / "step_00000004")] and done[1] == str(STEPS)
    assert same_weights(out / "final.safetensors", reference["final"])


# ------------------------------------------------------------------------------------------------- two processes

def launch(cache, out, log_dir, tag, env=None):
    "Both ranks of a two-process run (gloo), started as a multi-node launcher starts them, each with resume='auto'."
    base = dict(WORLD_SIZE="2", LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()),
                PSANN_LM_DIST_TIMEOUT="30", **(env or {}))
    return [Driver("ddp-chain", cache, out, DDP_STEPS, log_dir / f"{tag}_rank{r}.log", env={**base, "RANK": str(r), "LOCAL_RANK": str(r)})
            for r in (0, 1)]


def run_to_end(cache, out, log_dir, tag):
    ranks = launch(cache, out, log_dir, tag)
    try: codes = [r.proc.wait(timeout=600) for r in ranks]
    finally:
        for r in ranks: r.finish()
    assert codes == [0, 0], f"{tag}: exit statuses {codes}; see {log_dir}"
    assert same_weights(out / "final_rank0.safetensors", out / "final_rank1.safetensors")


@pytest.fixture(scope="module")
def ddp_reference(cache, tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp_ref")
    run_to_end(cache, root / "out", root, "ref")
    return root / "out" / "final_rank0.safetensors"


def rank_steps(lines) -> list[int]:
    return [int(w[3]) for w in lines if w[0] == "rank"]


def test_two_processes_stop_together_and_resume_exactly(cache, ddp_reference, tmp_path):
    "SIGTERM to one of the two processes only, at 2 random moments: both stop after the same step, saved; both relaunched."
    rng, out, ok = random.Random(1717), tmp_path / "run", []
    for trial in range(2):
        ranks = launch(cache, out, tmp_path, f"stop{trial}", env={"FAULT_SAVE_INTERVAL": "0"})
        try:
            at = rng.randint(3, 20)
            assert ranks[0].wait_for(lambda w: w[0] == "rank" and int(w[3]) >= at), f"training did not start; see {tmp_path}"
            target = rng.choice([0, 1])
            ranks[target].signal(signal.SIGTERM)
            steps = [rank_steps(finish_lines(r)) for r in ranks]
            codes = [r.proc.wait(timeout=60) for r in ranks]
        finally:
            for r in ranks: r.finish()
        errs = [(tmp_path / f"stop{trial}_rank{r}.log").read_text() for r in (0, 1)]
        last = checkpoints(out)[-1]
        agreed = steps[0][-1:] == steps[1][-1:] == [step_of(last)]
        said = [l for l in errs[0].splitlines() if "training stopped by SIGTERM" in l]
        ok.append(codes == [143, 143] and agreed and not any("Traceback" in e for e in errs) and len(said) == 1)
        assert codes == [143, 143], f"trial {trial}: exit statuses {codes} (SIGTERM to rank {target})\n{errs[0][-1500:]}\n{errs[1][-1500:]}"
        assert agreed, f"trial {trial}: the ranks stopped after steps {[s[-1:] for s in steps]}, checkpoint {last.name}"
        assert ok[-1], f"trial {trial}: {said} {[e[-800:] for e in errs]}"
        assert f"after step {step_of(last)} of {DDP_STEPS}: checkpoint {last};" in said[0]
    run_to_end(cache, out, tmp_path, "end")
    print(f"\ntwo processes, SIGTERM to one: {sum(ok)}/2 stopped together and resumed")
    assert same_weights(out / "final_rank0.safetensors", ddp_reference), "final weights differ from the uninterrupted two-process run's"


def test_a_killed_process_then_both_relaunched_end_as_the_uninterrupted_run(cache, ddp_reference, tmp_path):
    "SIGKILL to a random one of two processes at 3 random steps (checkpoints every 5 steps); both relaunched with resume='auto'."
    rng, out, trials = random.Random(6), tmp_path / "run", []
    for trial in range(3):
        ranks = launch(cache, out, tmp_path, f"kill{trial}", env={"FAULT_SAVE_INTERVAL": "5"})
        victim = rng.choice([0, 1])
        try:
            seen, ahead = [], rng.randint(1, 8)     # a moment counted in steps, so a loaded machine cannot
            def reached(w):                          # let the run finish before the kill
                if w[0] != "rank": return False
                seen.append(int(w[3]))
                return seen[-1] >= seen[0] + ahead
            assert ranks[victim].wait_for(reached), f"training did not start; see {tmp_path}"
            time.sleep(rng.uniform(0.0, 0.3))       # somewhere inside the next step
            assert all(r.proc.poll() is None for r in ranks), "the run ended before the kill: make DDP_STEPS larger"
            ranks[victim].signal(signal.SIGKILL)
            t0 = time.monotonic()
            survivor = ranks[1 - victim]
            code = survivor.proc.wait(timeout=90)
            elapsed = time.monotonic() - t0
        finally:
            for r in ranks: r.finish()
        err = (tmp_path / f"kill{trial}_rank{1 - victim}.log").read_text()
        trials.append(dict(victim=victim, code=code, elapsed=elapsed, lost="LostProcessError" in err,
                           latest=checkpoints(out)[-1].name if checkpoints(out) else None,
                           left=sorted(p.name for p in (out / "checkpoints").glob(".tmp-*")) if (out / "checkpoints").exists() else []))
    run_to_end(cache, out, tmp_path, "end")
    same = same_weights(out / "final_rank0.safetensors", ddp_reference)
    print(f"\none of two processes killed, both relaunched: {sum(t['lost'] for t in trials) if same else 0}/3 survived; "
          + "; ".join(f"rank {t['victim']} killed, the other exited {t['code']} after {t['elapsed']:.1f} s, "
                      f"resumed from {t['latest']}" for t in trials))
    for t in trials:
        assert t["code"] != 0 and t["lost"], f"the surviving process did not stop with a LostProcessError: {t}"
    assert same, "final weights differ from the uninterrupted two-process run's"


# ------------------------------------------------------------------------------------------------- in one process

@pytest.fixture(scope="module")
def data(cache):
    return fault_driver.prepare(cache)


def small(data, **kw):
    return psannLM(**{"base": "respsann", "d_model": 16, "n_layers": 1, "n_heads": 2, "vocab_size": data.vocab_size, "max_seq_len": 16, **kw})


FIT = dict(batch_size=4, lr=3e-3, progress=False, peak_flops=1e12)


def test_a_damaged_latest_checkpoint_is_skipped_for_the_one_before(data, tmp_path):
    out = tmp_path / "run"
    small(data).fit(data, max_steps=6, save_interval=2, keep_last=3, output_dir=str(out), **FIT)
    c2, c4, c6 = checkpoints(out)
    weights = c6 / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])                            # cut short
    with pytest.warns(UserWarning, match=rf"checkpoint {c6} is damaged \(model.safetensors has [\d,]+ bytes, not the [\d,]+ written\); skipped"):
        m = small(data).fit(data, max_steps=8, keep_last=3, output_dir=str(out), resume="auto", **FIT)
    assert m.last_fit["resumed_from"] == str(c4) and checkpoints(out) == [c4, c6, out / "checkpoints" / "step_00000008"]
    with pytest.raises(ValueError, match=r"resume='.*step_00000006' is a damaged checkpoint: model.safetensors has"):
        small(data).fit(data, max_steps=8, output_dir=str(tmp_path / "other"), resume=str(c6), **FIT)
    moments = c4 / "optimizer.bin"                                               # one byte changed, same size
    raw = bytearray(moments.read_bytes())
    raw[len(raw) // 2] ^= 1
    moments.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"damaged checkpoint: optimizer.bin does not match its SHA-256"):
        small(data).fit(data, max_steps=8, output_dir=str(tmp_path / "other"), resume=str(c4), **FIT)


def test_every_checkpoint_damaged_is_refused(data, tmp_path):
    out = tmp_path / "run"
    small(data).fit(data, max_steps=2, output_dir=str(out), **FIT)
    (checkpoints(out)[-1] / "psann_state.json").write_text('{"state": ')         # a torn record
    with pytest.warns(UserWarning, match="psann_state.json cannot be read"), \
         pytest.raises(ValueError, match=r"every checkpoint in .* is damaged .*new output_dir"):
        small(data).fit(data, max_steps=4, output_dir=str(out), resume="auto", **FIT)


def test_a_changed_run_is_refused_before_any_step(data, cache, tmp_path):
    out = tmp_path / "run"
    small(data).fit(data, max_steps=2, output_dir=str(out), **FIT)
    ckpt = checkpoints(out)[-1]
    before = (out / "metrics.jsonl").read_text()
    with pytest.raises(ValueError, match=rf"cannot resume from {ckpt}: .*model.d_mlp 64 → 96, model.d_model 16 → 24\)\. "
                                         r"To go on, start fresh in a new output_dir .*never continues with another model"):
        small(data, d_model=24).fit(data, max_steps=4, output_dir=str(out), resume="auto", **FIT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other_tok = psannLMDataPrep(fault_driver.TEXTS, vocab_size=data.vocab_size - 10, max_length=16, cache_dir=cache, progress=False)
        more = psannLMDataPrep(fault_driver.TEXTS + ["Note 99: a new text."], tokenizer=data.tokenizer, max_length=16,
                               cache_dir=cache, progress=False)
    assert other_tok.vocab_size <= data.vocab_size
    with pytest.raises(ValueError, match=r"written by a different run \(.*tokenizer '.*…' → '.*…'.*never continues"):
        small(other_tok, vocab_size=data.vocab_size).fit(other_tok, max_steps=4, output_dir=str(out), resume="auto", **FIT)
    with pytest.raises(ValueError, match=r"data.corpus '.*' → '.*', data.windows 88 → 89\)\. To go on, start fresh in a new "
                                         r"output_dir .*, or continue on the changed data deliberately with resume='force'$"):
        small(more).fit(more, max_steps=4, output_dir=str(out), resume="auto", **FIT)
    assert checkpoints(out) == [ckpt] and (out / "metrics.jsonl").read_text() == before, "a refused resume must not train"
    with pytest.warns(UserWarning, match=r"resume='force': continuing from .* on changed data \(data.corpus"):
        m = small(more).fit(more, max_steps=4, output_dir=str(out), resume="force", **FIT)
    assert m.last_fit["resumed_from"] == str(ckpt) and m.last_fit["steps"] == 4
    with pytest.raises(ValueError, match="model.d_model 16 → 24"):       # force never covers a model change
        small(more, d_model=24).fit(more, max_steps=6, output_dir=str(out), resume="force", **FIT)


def test_a_signal_in_python_raises_training_stopped_and_restores_the_handlers(data, tmp_path):
    "In a notebook or a script: Ctrl-C (SIGINT) during a step; without an output_dir nothing is saved but the weights are kept."
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    m, forwards = small(data), [0]
    def ctrl_c(module, args):
        forwards[0] += module.training
        if forwards[0] == 3: signal.raise_signal(signal.SIGINT)
    m.fit(data, max_steps=1, **FIT)                                            # builds the network
    m.net.register_forward_pre_hook(ctrl_c)
    with pytest.raises(TrainingStopped) as e:
        m.fit(data, max_steps=10, **FIT)
    assert (e.value.code, e.value.sig, e.value.step, e.value.checkpoint) == (130, "SIGINT", 3, None)
    assert str(e.value).startswith("training stopped by SIGINT after step 3 of 10: nothing was saved (no output_dir)")
    assert e.value.result["completed"] is False and e.value.result["stopped"] == "SIGINT"
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    m.net._forward_pre_hooks.clear()                                           # restored after an error too
    m.net.head.register_forward_hook(lambda mod, a, y: y * float("nan"))
    with pytest.raises(FloatingPointError):
        m.fit(data, max_steps=2, **FIT)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_training_in_another_thread_installs_no_handler(data):
    before, res = signal.getsignal(signal.SIGTERM), {}
    t = threading.Thread(target=lambda: res.update(m=small(data).fit(data, max_steps=2, **FIT)))
    t.start()
    t.join(120)
    assert res["m"].last_fit["completed"] and signal.getsignal(signal.SIGTERM) is before


RUN_YAML = """model: {base: respsann, d_model: 16, n_layers: 1, n_heads: 2}
data: {sources: [corpus.txt], max_length: 16, vocab_size: 300}
train: {max_steps: 3000, batch_size: 4, lr: 0.003, log_interval: 1, checkpoint_dir: run, peak_flops: 1.0e+12}
"""


def test_psann_lm_train_stopped_by_sigterm_then_resumed(tmp_path):
    "The command a user runs: SIGTERM while it trains, then the same command with train.resume=auto."
    (tmp_path / "corpus.txt").write_text("\n".join(fault_driver.TEXTS))
    (tmp_path / "run.yaml").write_text(RUN_YAML)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PSANN_LM_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen([script("psann-lm-train"), "--config", "run.yaml"], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    metrics, deadline = tmp_path / "run" / "metrics.jsonl", time.monotonic() + 300
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 5) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    last = err.strip().splitlines()[-1]
    print(f"\npsann-lm-train, SIGTERM: exit status {proc.returncode}: {last}")
    assert proc.returncode == 143 and "Traceback" not in err, err[-3000:]
    assert last.startswith("training stopped by SIGTERM after step ") and " of 3000: checkpoint run/checkpoints/step_" in last
    assert last.endswith("relaunch with resume='auto' (psann-lm-train: train.resume=auto) to continue (exit status 143)")
    step = int(last.split("after step ")[1].split()[0])
    assert [c.name for c in checkpoints(tmp_path / "run")] == [f"step_{step:08d}"]
    assert not (tmp_path / "run" / "model").exists(), "a stopped run saves its checkpoint, not a finished model"
    again = subprocess.run([script("psann-lm-train"), "--config", "run.yaml", "train.resume=auto", f"train.max_steps={step + 5}"],
                           cwd=tmp_path, env=env, text=True, capture_output=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    logged = [json.loads(l)["step"] for l in metrics.read_text().splitlines() if "loss" in json.loads(l)]
    assert logged == list(range(1, step + 6)) and (tmp_path / "run" / "model" / "model.safetensors").exists()
