"""Worker for test_accumulation.py: one optimizer step on per-document windows; saves the step's gradient and loss."""
import json
import sys
import warnings
from pathlib import Path

import torch

from psann_lm.trainer import TrainConfig, train

sys.path.insert(0, str(Path(__file__).parent))
from test_accumulation import capture_step, tiny_data, tiny_net  # noqa: E402


def main(cache: str, out: str, batch_size: int, accum: int):
    from accelerate import PartialState
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = tiny_data(cache)
    cfg = TrainConfig(max_steps=1, batch_size=batch_size, grad_accum_steps=accum, lr=1e-3, grad_clip=None,
                      log_interval=1, progress=False, peak_flops=1e12)
    with capture_step() as grads:
        net = tiny_net(data)
        res = train(net, data, cfg)
    rank = PartialState().process_index
    torch.save(grads[0], Path(out) / f"grad_rank{rank}.pt")
    last = res["last"]
    (Path(out) / f"result_rank{rank}.json").write_text(json.dumps(dict(
        loss=last["loss"], tokens=res["tokens"], mfu=last["mfu"], tokens_per_s=last["tokens_per_s"],
        flops_per_token=net.flops_per_token(data.max_length), peak_flops=cfg.peak_flops)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
