"""FSDP2 (`fsdp=True`) on two CPU processes (gloo): it trains as DDP does, resumes bit for bit,
and saves whole models.

Two launches of tests/fsdp_worker.py: one trains the same model with DDP, then FSDP (through
`psannLM.fit`, saved), then FSDP stopped after step 4; a second, fresh one resumes the stopped run.
GPUs (NCCL) are not tested here.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from psann_lm.api import psannLM

sys.path.insert(0, str(Path(__file__).parent))
import fsdp_worker  # noqa: E402

WORKER = str(Path(__file__).with_name("fsdp_worker.py"))


def launch(what, cache, out):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PSANN_LM_DIST_TIMEOUT": "120"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           WORKER, what, str(cache), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    root = tmp_path_factory.mktemp("fsdp")
    fsdp_worker.prepare(root / "cache")   # once, before the workers start: they only read it
    launch("runs", root / "cache", root)
    launch("resume", root / "cache", root)
    return root


def close(a, b, tol=1e-5):
    return len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b)) <= tol
def result(out, name, rank=0): return json.loads((out / f"{name}_rank{rank}.json").read_text())
def weights(out, name, rank=0): return torch.load(out / f"{name}_weights_rank{rank}.pt")


def test_fsdp_trains_as_ddp_does(out):
    ddp, fsdp = result(out, "ddp"), result(out, "fsdp")
    assert fsdp["processes"] == 2 and fsdp["steps"] == ddp["steps"] == 10
    assert fsdp["tokens"] == ddp["tokens"]
    assert close(ddp["losses"], fsdp["losses"]), (ddp["losses"], fsdp["losses"])
    assert min(fsdp["norms"]) > fsdp_worker.SETTINGS["grad_clip"], "every step clipped"
    assert close(ddp["norms"], fsdp["norms"]), (ddp["norms"], fsdp["norms"])
    assert close([ddp["eval"]["loss"]], [fsdp["eval"]["loss"]])
    assert ddp["eval"]["tokens"] == fsdp["eval"]["tokens"]
    w_ddp, w0, w1 = weights(out, "ddp"), weights(out, "fsdp"), weights(out, "fsdp", 1)
    for k in w_ddp:
        assert torch.equal(w0[k], w1[k]), f"the processes' models disagree on {k}"
        assert (w0[k] - w_ddp[k]).abs().max() <= 1e-5, k


def test_fsdp_resumes_bit_for_bit(out):
    stopped, resumed, straight = result(out, "stopped"), result(out, "resumed"), result(out, "fsdp")
    assert stopped["steps"] == 4 and resumed["steps"] == 10
    assert resumed["tokens"] == straight["tokens"]
    assert resumed["losses"] == straight["losses"][4:], "the resumed steps are the straight run's"
    full = weights(out, "fsdp")
    for rank in (0, 1):
        w = weights(out, "resumed", rank)
        assert all(torch.equal(full[k], w[k]) for k in full), f"process {rank}: weights differ"
    ckpt = out / "stopped_run" / "checkpoints" / "step_00000004"
    moments = torch.load(ckpt / "optimizer.bin", weights_only=True)["state"]
    whole = moments["embed.weight"]["exp_avg"].shape == full["embed.weight"].shape
    assert whole, "the optimizer state is stored whole"


def test_fsdp_final_save_is_one_whole_file(out):
    ckpt, ddp_ckpt = (out / f"{n}_run" / "checkpoints" / "step_00000010" for n in ("fsdp", "ddp"))
    assert [p.name for p in ckpt.glob("*.safetensors")] == ["model.safetensors"]
    saved, ddp_saved = (load_file(c / "model.safetensors") for c in (ckpt, ddp_ckpt))
    trained = weights(out, "fsdp")
    assert sorted(saved) == sorted(ddp_saved), "an unsharded run's keys (the tied head stored once)"
    assert all(torch.equal(v, trained[k]) for k, v in saved.items())
    loaded = psannLM.load(out / "saved")   # psannLM.save on the main process after fit(fsdp=True)
    assert all(torch.equal(v, trained[k]) for k, v in loaded.net.state_dict().items())


def test_fsdp_on_one_process_is_refused(tmp_path):
    data = fsdp_worker.prepare(tmp_path / "cache")
    m = psannLM(**fsdp_worker.MODEL, vocab_size=data.vocab_size)
    with pytest.raises(ValueError, match="fsdp=True, but this run has 1 process"):
        m.fit(data, max_steps=1, fsdp=True, progress=False, peak_flops=1e12)
