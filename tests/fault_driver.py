"""Training driver for test_faults.py: a tiny model trained with a checkpoint every step, reporting on stdout what it does,
so that the test can kill it (SIGKILL) or stop it (SIGSTOP) at chosen moments and check what the next run resumes from.

    python fault_driver.py chain CACHE OUT STEPS       # resume='auto'; prints `loaded <ckpt>`, `save-start`, `save-written`, `step <n>`, `done`
    python fault_driver.py reference CACHE OUT STEPS   # never resumes; prints `digest <n> <sha256>` of every checkpoint it writes
    python fault_driver.py plain CACHE OUT STEPS       # never resumes; prints `step <n>`
    python fault_driver.py ddp CACHE OUT STEPS         # under several processes; prints `rank <r> step <n>`
    python fault_driver.py ddp-chain CACHE OUT STEPS   # the same with resume='auto' (prints `loaded <ckpt>` too)

Every mode but `ddp` writes the final weights (`final.safetensors`, under several processes `final_rank<r>.safetensors`).
$FAULT_SAVE_PAUSE (seconds) makes every checkpoint write linger after its files are written and before it is committed
(psann_state.json and the rename), so that a kill can be aimed there; the test's only hook into the library's timing.
$FAULT_SAVE_INTERVAL sets save_interval (default 1; 0: checkpoints only at the end or on a stop).
$FAULT_FSIZE="STEP:BYTES" limits every file the process writes to BYTES (RLIMIT_FSIZE, as `ulimit -f` does) once step
STEP is done, so that a later checkpoint write fails as on a full disk.
"""
import hashlib
import json
import os
import resource
import signal
import sys
import time
import warnings
from pathlib import Path

import torch

TEXTS = [f"Note {i}: " + " ".join(f"w{(i * 7 + j * 3) % 23}" for j in range(8 + i % 9)) + "." for i in range(48)]


def prepare(cache):
    from psann_lm.dataprep import psannLMDataPrep
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return psannLMDataPrep(TEXTS, vocab_size=300, max_length=16, cache_dir=cache, progress=False)


def digest(ckpt) -> str:
    "SHA-256 of a checkpoint's weights, optimizer state and counters (what a resumed run continues from)."
    from safetensors.torch import load_file
    ckpt, h = Path(ckpt), hashlib.sha256()
    for name, t in sorted(load_file(ckpt / "model.safetensors").items()): h.update(name.encode()); h.update(t.numpy().tobytes())
    opt = torch.load(ckpt / "optimizer.bin", weights_only=True)
    for key in sorted(opt["state"]):
        for name, v in sorted(opt["state"][key].items()): h.update(f"{key}.{name}".encode()); h.update(v.numpy().tobytes())
    h.update(json.dumps(json.loads((ckpt / "psann_state.json").read_text())["state"], sort_keys=True).encode())
    return h.hexdigest()


def say(*words):
    print(*words, flush=True)


def main(mode, cache, out, steps):
    torch.set_num_threads(1)                       # one thread: deterministic kernels, no oversubscription of the test machine
    signal.signal(signal.SIGINT, signal.default_int_handler)   # as in a terminal, even when started with SIGINT ignored
    from accelerate import Accelerator
    from psann_lm import trainer
    from psann_lm.model import DecoderLM, ModelConfig
    data = prepare(cache)
    torch.manual_seed(0)
    net = DecoderLM(ModelConfig(base="waveresnet", vocab_size=data.vocab_size, d_model=32, n_layers=2, n_heads=4, max_seq_len=16))
    pause = float(os.environ.get("FAULT_SAVE_PAUSE", "0"))
    save_interval = int(os.environ.get("FAULT_SAVE_INTERVAL", "1")) or None
    limit_at, _, limit = os.environ.get("FAULT_FSIZE", "0:0").partition(":")

    save_state, load_state = Accelerator.save_state, Accelerator.load_state
    def saving(self, output_dir=None, **kw):
        say("save-start")
        res = save_state(self, output_dir, **kw)
        say("save-written")
        time.sleep(pause)
        return res
    def loading(self, input_dir=None, **kw):
        res = load_state(self, input_dir, **kw)
        say("loaded", input_dir)
        return res
    def stepped(state):   # train's on_step: after each step, once it is logged, evaluated and saved
        if state.step == int(limit_at): resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), resource.RLIM_INFINITY))
        if mode.startswith("ddp"): say("rank", os.environ["RANK"], "step", state.step)
        elif mode == "reference": say("digest", state.step, digest(trainer.checkpoints(out)[-1]))
        else: say("step", state.step)
    Accelerator.save_state, Accelerator.load_state = saving, loading

    cfg = trainer.TrainConfig(max_steps=steps, batch_size=4, lr=3e-3, save_interval=save_interval, keep_last=2, output_dir=out,
                              log_interval=1, resume="auto" if mode in ("chain", "ddp-chain") else False, progress=False, peak_flops=1e12)
    res = trainer.train(net, data, cfg, on_step=stepped)
    if mode != "ddp":
        from safetensors.torch import save_file
        name = f"final_rank{os.environ['RANK']}.safetensors" if mode.startswith("ddp") else "final.safetensors"
        save_file({k: v.contiguous() for k, v in net.state_dict().items() if k != "head.weight"}, str(Path(out) / name))
    say("done", res["steps"], res["resumed_from"])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
