"""A saved model records the SHA-256 of its weights; a file changed since (a flipped bit, a truncation) is refused on load."""
import hashlib
import json
import os
import re
import shutil
import warnings

import pytest
import torch

from psann_lm.api import psannLM
from psann_lm.tokenizer import train_tokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # never the Hub
TEXTS = [f"Document {i}: the quick brown fox jumps over the lazy dog {i % 7} times, then rests." for i in range(60)]


@pytest.fixture(scope="module")
def tokenizer():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train_tokenizer(TEXTS, vocab_size=300)


@pytest.fixture
def saved(tokenizer, tmp_path):
    m = psannLM(base="waveresnet", d_model=32, n_layers=2, n_heads=4, vocab_size=tokenizer.vocab_size,
                max_seq_len=32)
    m.tokenizer = tokenizer
    return m, m.save(tmp_path / "model")


def tensors_start(path) -> int:
    "Where the tensors' bytes begin in a safetensors file: after 8 bytes of header length and the header."
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


def flip_bit(path, offset: int):
    data = bytearray(path.read_bytes())
    data[tensors_start(path) + offset] ^= 1
    path.write_bytes(data)


def logits(m):
    ids = torch.arange(20).reshape(2, 10) % m.config.vocab_size
    with torch.no_grad(): return m.net.eval()(ids).logits


def test_save_records_the_sha256_of_the_bytes_written(saved):
    m, d = saved
    meta = json.loads((d / "config.json").read_text())
    assert meta["checksums"] == {"model.safetensors": hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest()}
    assert torch.equal(logits(psannLM.load(d)), logits(m))


@pytest.mark.parametrize("offset", [0, 1000, -1])
def test_a_flipped_bit_in_the_weights_is_refused_naming_the_file(saved, offset):
    m, d = saved
    weights = d / "model.safetensors"
    size = weights.stat().st_size - tensors_start(weights)
    flip_bit(weights, offset % size)
    says = re.escape(f"{d / 'model.safetensors'} is corrupt: its SHA-256 is not the one recorded in config.json")
    with pytest.raises(ValueError, match=says + ".*save the model again, or download it again"):
        psannLM.load(d)


def test_a_truncated_file_is_refused(saved):
    _, d = saved
    weights = d / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ValueError, match=re.escape(f"{weights} could not be read as safetensors") + ".*damaged"):
        psannLM.load(d)


def test_a_file_that_still_parses_but_changed_is_refused(saved):
    "Weights rewritten as valid safetensors (another value in one tensor) are caught by the checksum alone."
    from safetensors.torch import load_file, save_file
    _, d = saved
    state = load_file(str(d / "model.safetensors"))
    state["embed.weight"] = state["embed.weight"].clone()
    state["embed.weight"][0, 0] += 1e-3                       # another valid file, other weights
    save_file(state, str(d / "model.safetensors"), metadata={"format": "psann_lm/1"})
    with pytest.raises(ValueError, match=r"model\.safetensors is corrupt"):
        psannLM.load(d)


def test_an_older_directory_without_checksums_still_loads(saved):
    m, d = saved
    meta = json.loads((d / "config.json").read_text())
    del meta["checksums"]
    (d / "config.json").write_text(json.dumps(meta))
    assert torch.equal(logits(psannLM.load(d)), logits(m))


@pytest.mark.parametrize("checksums, message", [
    ({"model.safetensors": "00"}, r"checksums must map 'model\.safetensors'"),
    ({}, r"checksums must map 'model\.safetensors'"),
    ("abc", r"checksums must map 'model\.safetensors'"),
    ({"model.safetensors": "0" * 64, "../elsewhere": "0" * 64}, r"checksums must map"),
])
def test_a_damaged_checksums_entry_is_refused(saved, checksums, message):
    _, d = saved
    meta = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**meta, "checksums": checksums}))
    with pytest.raises(ValueError, match=message):
        psannLM.load(d)


def test_saving_again_records_the_new_weights(saved):
    m, d = saved
    before = json.loads((d / "config.json").read_text())["checksums"]
    with torch.no_grad(): m.net.embed.weight.add_(1.0)
    m.save(d)
    after = json.loads((d / "config.json").read_text())["checksums"]
    assert after != before
    assert torch.equal(logits(psannLM.load(d)), logits(m))


def test_a_large_file_is_hashed_in_chunks(tmp_path):
    from psann_lm.model import file_sha256
    big = tmp_path / "big"
    big.write_bytes(os.urandom(3 * (1 << 20) + 17))           # three chunks and a tail
    assert file_sha256(big) == hashlib.sha256(big.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------- transformers

def test_transformers_refuses_a_corrupt_directory_and_writes_checksums(saved, tmp_path):
    transformers = pytest.importorskip("transformers")
    _, d = saved
    hf = transformers.AutoModelForCausalLM.from_pretrained(d, trust_remote_code=True)
    again = tmp_path / "from-transformers"
    hf.save_pretrained(again)                                # psann_lm's layout, with the weights' checksum
    sums = json.loads((again / "config.json").read_text())["checksums"]
    assert sums == {"model.safetensors": hashlib.sha256((again / "model.safetensors").read_bytes()).hexdigest()}
    psannLM.load(again)
    for directory in (d, again):
        flip_bit(directory / "model.safetensors", 10)
        for load in (lambda: transformers.AutoModelForCausalLM.from_pretrained(directory, trust_remote_code=True),
                     lambda: psannLM.load(directory)):
            with pytest.raises(ValueError, match=re.escape(f"{directory / 'model.safetensors'} is corrupt")):
                load()


def test_transformers_loads_an_older_directory_unchecked(saved, tmp_path):
    transformers = pytest.importorskip("transformers")
    m, d = saved
    old = tmp_path / "old"
    shutil.copytree(d, old)
    meta = json.loads((old / "config.json").read_text())
    del meta["checksums"]
    (old / "config.json").write_text(json.dumps(meta))
    hf = transformers.AutoModelForCausalLM.from_pretrained(old, trust_remote_code=True)
    ids = torch.arange(20).reshape(2, 10) % m.config.vocab_size
    with torch.no_grad(): torch.testing.assert_close(hf(ids).logits, logits(m), rtol=0, atol=1e-5)


def test_a_damaged_cached_shard_is_refused_on_reuse(tmp_path):
    "Token shards record their SHA-256 in meta.json; reusing a preparation whose shard changed is refused, naming it."
    from psann_lm import psannLMDataPrep
    texts = [f"Document {i}: the quick brown fox jumps {i % 7} times." for i in range(100)]
    kw = dict(vocab_size=300, max_length=16, cache_dir=tmp_path, progress=False, val_split=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = psannLMDataPrep(texts, **kw)
        assert psannLMDataPrep(texts, **kw).reused                        # intact: reused
        meta = first.meta["splits"]["train"]
        assert all(len(s["sha256"]) == 64 for s in meta["shards"]) and len(meta["docs_sha256"]) == 64
        shard = first.directory / meta["shards"][0]["file"]
        data = bytearray(shard.read_bytes())
        data[10] ^= 1
        shard.write_bytes(bytes(data))
        with pytest.raises(ValueError, match=rf"{re.escape(str(shard))} is damaged .*delete .* and run again"):
            psannLMDataPrep(texts, **kw)
