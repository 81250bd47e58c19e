"""The gradient of one optimizer step is the gradient of the mean loss over all its target tokens, however the step is
split into micro-batches and processes (per-document windows of unequal lengths make a wrong weighting visible)."""
import contextlib
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from psann_lm.dataprep import psannLMDataPrep
from psann_lm.model import DecoderLM, ModelConfig
from psann_lm.trainer import TrainConfig, train

# six documents of very different lengths: each becomes one per-document window with its own count of target tokens
DOCS = ["a", "the cat sat on the mat and looked at the door for a long time",
        "dogs bark", "one two three four five six seven eight nine ten eleven",
        "sun", "rain falls on the plain in spain, mainly"]
N = len(DOCS)


def tiny_data(cache):
    return psannLMDataPrep(DOCS, vocab_size=300, max_length=48, pack_sequences=False, cache_dir=cache, progress=False)


def tiny_net(data):
    torch.manual_seed(0)
    return DecoderLM(ModelConfig(base="waveresnet", vocab_size=data.vocab_size, d_model=32, n_layers=2, n_heads=4,
                                 max_seq_len=48))


@contextlib.contextmanager
def capture_step():
    "Collect the gradient (one flat float64 vector) each optimizer step sees, before it changes the weights."
    grads = []
    def hook(opt, args, kwargs):
        grads.append(torch.cat([p.grad.double().flatten() for g in opt.param_groups for p in g["params"]]))
    handle = register_optimizer_step_pre_hook(hook)
    try: yield grads
    finally: handle.remove()


def one_step(data, batch_size, accum):
    cfg = TrainConfig(max_steps=1, batch_size=batch_size, grad_accum_steps=accum, lr=1e-3, grad_clip=None,
                      log_interval=1, progress=False, peak_flops=1e12)
    with capture_step() as grads:
        res = train(tiny_net(data), data, cfg)
    assert res["steps"] == 1 and len(grads) == 1
    return grads[0], res["last"]["loss"]


def reference(data):
    "The gradient and value of the mean next-token loss over every target token of the whole dataset, by hand."
    net = tiny_net(data)
    items = [data.dataset[i] for i in range(len(data.dataset))]
    counts = [int((it["labels"][1:] != -100).sum()) for it in items]
    batches = [{k: v[None] for k, v in it.items()} for it in items]
    loss = sum(net(b["input_ids"], labels=b["labels"], attention_mask=b.get("attention_mask")).loss * n
               for b, n in zip(batches, counts)) / sum(counts)
    loss.backward()
    grad = torch.cat([p.grad.double().flatten() for g in net.param_groups(0.1) for p in g["params"]])
    return grad, loss.item()


def rel(a, b): return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = tiny_data(tmp_path_factory.mktemp("accum") / "cache")
    counts = [int((d.dataset[i]["labels"][1:] != -100).sum()) for i in range(len(d.dataset))]
    assert len(counts) == N and len(set(counts)) > 3, f"the test needs {N} windows of unequal lengths, got {counts}"
    return d


@pytest.mark.parametrize("batch_size,accum", [(N, 1), (1, N), (2, math.ceil(N / 2)), (1, 8), (4, 3)])
def test_step_gradient_is_the_token_mean_however_split(data, batch_size, accum):
    "(1, 8) and (4, 3) end the epoch inside their accumulation group: the partial group must not be scaled down."
    want, want_loss = reference(data)
    got, loss = one_step(data, batch_size, accum)
    assert rel(got, want) <= 1e-6, f"B={batch_size}, G={accum}: step gradient {rel(got, want):.2%} away from the token mean"
    assert abs(loss - want_loss) <= 1e-6 * abs(want_loss), f"logged loss {loss} is not the token-weighted mean {want_loss}"


def test_two_processes_give_the_same_step_gradient(data, tmp_path):
    cache = Path(data.directory).parent
    want, want_loss = reference(data)
    worker = str(Path(__file__).with_name("accum_worker.py"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PSANN_LM_DIST_TIMEOUT": "120"}
    for batch_size, accum in [(1, N // 2), (N // 2, 1)]:
        out = tmp_path / f"b{batch_size}g{accum}"
        out.mkdir()
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", worker,
               str(cache), str(out), str(batch_size), str(accum)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        for rank in (0, 1):
            got = torch.load(out / f"grad_rank{rank}.pt")
            assert rel(got, want) <= 1e-6, f"2 processes, B={batch_size}, G={accum}, rank {rank}: {rel(got, want):.2%} away"
            r = json.loads((out / f"result_rank{rank}.json").read_text())
            assert abs(r["loss"] - want_loss) <= 1e-6 * abs(want_loss), f"logged loss {r['loss']} ≠ token mean {want_loss}"
            per_device = r["tokens_per_s"] / 2 * r["flops_per_token"] / r["peak_flops"]
            assert r["mfu"] == pytest.approx(per_device), "MFU: one device's tokens/s against one device's peak"
