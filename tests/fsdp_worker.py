"""Worker for test_fsdp.py, under `torchrun --nproc_per_node=2` on CPU (gloo).

`runs`: the same tiny model and data trained with DDP, then with FSDP2 (through `psannLM.fit`, with
a final checkpoint and `save`), then with FSDP2 stopped after step 4; `resume`: a fresh launch that
resumes the stopped run.
Each process writes its losses, gradient norms, evaluation and final weights into `out`.
"""
import json
import sys
import warnings
from pathlib import Path

import torch
from accelerate import PartialState

from psann_lm.api import psannLM
from psann_lm.dataprep import default_corpus, psannLMDataPrep
from psann_lm.model import DecoderLM, ModelConfig
from psann_lm.trainer import TrainConfig, train

MODEL = dict(base="waveresnet", d_model=32, n_layers=2, n_heads=4, max_seq_len=32)
SETTINGS = dict(max_steps=10, batch_size=4, grad_accum_steps=2, lr=3e-3, grad_clip=0.5,
                log_interval=1, progress=False, peak_flops=1e12)


def prepare(cache):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return psannLMDataPrep(default_corpus()[:20], vocab_size=400, max_length=32, val_split=0.2,
                               cache_dir=cache, progress=False)


def net(data, seed=0):
    "A bare DecoderLM, built as psannLM builds it."
    torch.manual_seed(seed)
    return DecoderLM(ModelConfig(**MODEL, vocab_size=data.vocab_size))


def record(out, name, res, weights):
    rank = PartialState().process_index
    weights = {k: v.detach().cpu() for k, v in weights.items()}
    torch.save(weights, out / f"{name}_weights_rank{rank}.pt")
    steps = [r for r in res["history"] if "loss" in r]
    summary = dict(losses=[r["loss"] for r in steps], norms=[r["grad_norm"] for r in steps],
                   tokens=res["tokens"], steps=res["steps"], eval=res["eval"],
                   processes=PartialState().num_processes)
    (out / f"{name}_rank{rank}.json").write_text(json.dumps(summary))


def runs(cache, out):
    data, out = prepare(cache), Path(out)
    for name, fsdp in (("ddp", False), ("fsdp", True)):
        torch.manual_seed(0)
        m = psannLM(**MODEL, vocab_size=data.vocab_size, seed=0)   # as net(data) builds it
        m.fit(data, **SETTINGS, fsdp=fsdp, output_dir=str(out / f"{name}_run"))
        record(out, name, m.last_fit, m.net.state_dict())
        if fsdp and PartialState().is_main_process: m.save(out / "saved")
    stopped = net(data)
    cfg = TrainConfig(**SETTINGS, fsdp=True, output_dir=str(out / "stopped_run"))
    res = train(stopped, data, cfg, on_step=lambda state: state.step == 4)   # stopped as if pre-empted
    record(out, "stopped", res, stopped.state_dict())


def resume(cache, out):
    data, out = prepare(cache), Path(out)
    resumed = net(data, seed=1)   # other initial weights: everything must come from the checkpoint
    cfg = TrainConfig(**SETTINGS, fsdp=True, output_dir=str(out / "stopped_run"), resume=True)
    res = train(resumed, data, cfg)
    record(out, "resumed", res, resumed.state_dict())


if __name__ == "__main__":
    dict(runs=runs, resume=resume)[sys.argv[1]](sys.argv[2], sys.argv[3])
