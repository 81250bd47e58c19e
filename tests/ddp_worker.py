"""Worker for test_multiprocess.py: trains a tiny model under whatever `accelerate`/`torchrun` launched, saves each rank's weights."""
import json
import sys
import warnings
from pathlib import Path

import torch

from psann_lm.dataprep import default_corpus, psannLMDataPrep
from psann_lm.model import DecoderLM, ModelConfig
from psann_lm.trainer import TrainConfig, train


def main(cache: str, out: str, batch_size: int):
    from accelerate import PartialState
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = psannLMDataPrep(default_corpus()[:20], vocab_size=400, max_length=32, cache_dir=cache, progress=False)
    torch.manual_seed(0)
    net = DecoderLM(ModelConfig(base="waveresnet", vocab_size=data.vocab_size, d_model=32, n_layers=2, n_heads=4, max_seq_len=32))
    cfg = TrainConfig(max_steps=6, batch_size=batch_size, lr=1e-3, grad_clip=None, log_interval=1, output_dir=out, progress=False, peak_flops=1e12)
    res = train(net, data, cfg)
    state = PartialState()
    torch.save(net.state_dict(), Path(out) / f"weights_rank{state.process_index}.pt")
    (Path(out) / f"result_rank{state.process_index}.json").write_text(json.dumps(dict(
        rank=state.process_index, processes=state.num_processes, type=str(state.distributed_type), steps=res["steps"], tokens=res["tokens"])))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
