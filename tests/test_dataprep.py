"""Data preparation under several processes: distributed sharding of windows, and a preparation killed midway."""
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from psann_lm.dataprep import default_corpus, psannLMDataPrep


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    docs = default_corpus()[:120]
    return psannLMDataPrep(docs, vocab_size=1024, max_length=64, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


def windows_seen(dataset, rank, num_processes=2, num_workers=2, seed=0):
    from accelerate.data_loader import prepare_data_loader
    dl = DataLoader(dataset, batch_size=4, shuffle=True, num_workers=num_workers)
    dl = prepare_data_loader(dl, num_processes=num_processes, process_index=rank, even_batches=False,
                             use_seedable_sampler=True, data_seed=seed)
    return [tuple(row.tolist()) for batch in dl for row in batch["labels"]]


def test_two_ranks_two_workers_cover_every_window_once(prepared):
    ds = prepared.dataset
    assert len(ds) > 50
    everything = Counter(tuple(ds[i]["labels"].tolist()) for i in range(len(ds)))
    assert max(everything.values()) == 1, "windows of this corpus are distinct, so rows identify windows"
    per_rank = [windows_seen(ds, r) for r in range(2)]
    assert not set(per_rank[0]) & set(per_rank[1]), "ranks must see disjoint windows"
    assert Counter(per_rank[0] + per_rank[1]) == everything, "together the ranks must see every window exactly once"
    assert windows_seen(ds, 0) == per_rank[0], "the seedable sampler must give each rank the same order again"


KILL_ME = textwrap.dedent("""
    import sys
    from psann_lm.dataprep import psannLMDataPrep
    psannLMDataPrep.from_files(sys.argv[1], vocab_size=512, cache_dir=sys.argv[2], progress=False)
""")


def test_killed_preparation_is_never_taken_for_complete(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(default_corpus()) * 8)          # about 12 MB: several seconds of work
    cache = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-c", KILL_ME, str(corpus), str(cache)])
    deadline = time.time() + 60
    while time.time() < deadline and not any(cache.glob("*.tmp-*/train_00000.bin")): time.sleep(0.05)
    assert any(cache.glob("*.tmp-*/train_00000.bin")), "the preparation should be writing shards by now"
    os.kill(proc.pid, signal.SIGKILL); proc.wait()
    assert not [p for p in cache.iterdir() if ".tmp-" not in p.name], "a killed preparation must leave no completed-looking directory"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = psannLMDataPrep.from_files(corpus, vocab_size=512, cache_dir=cache, progress=False)
    assert not data.reused
    assert data.meta["splits"]["train"]["tokens"] == sum(s["tokens"] for s in data.meta["splits"]["train"]["shards"])
    text = data.tokenizer.decode(data.dataset.stream.slice(0, 200).tolist())
    assert corpus.read_text().startswith(text[:100])
