"""Data as users hand it to psannLMDataPrep: a path string, a list of paths, one big file with a validation split,
files in formats not read (Arrow, xz, zip, a Parquet file named .txt, a JSON array), and prebuilt tokenizers without
an end token (sentencepiece eos_id=-1, a bare tokenizer.json). The formats read: test_corpus_formats.py."""
import io
import re
import warnings

import pytest
import sentencepiece as spm
import tokenizers
from tokenizers import models, pre_tokenizers, trainers

from psann_lm.dataprep import default_corpus, psannLMDataPrep

DOCS = default_corpus()[:40]


def prep(data, cache, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return psannLMDataPrep(data, **{"vocab_size": 512, "max_length": 32, "cache_dir": cache, "progress": False, **kw})


def text_of(data, stream):
    return data.tokenizer.decode(stream.slice(0, len(stream)).tolist())


@pytest.fixture
def files(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("alpha file: " + DOCS[0])
    b.write_text("beta file: " + DOCS[1])
    return a, b


# ------------------------------------------------------------------------------------------ lists of strings


def test_list_of_path_strings_is_read_as_files(files, tmp_path):
    data = prep([str(p) for p in files], tmp_path / "cache")
    text = text_of(data, data.dataset.stream)
    assert text.startswith("alpha file: ") and "beta file: " in text
    assert str(files[0]) not in text, "the path strings themselves must not be trained on"
    assert data.meta["splits"]["train"]["documents"] == 2


def test_list_with_one_missing_path_is_refused(files, tmp_path):
    with pytest.raises(ValueError, match=r"item 1 \(.*b\.tx'\) names no file.*from_files.*as_files=True"):
        prep([str(files[0]), str(files[1])[:-1]], tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_list_of_texts_that_name_files_can_still_be_texts(files, tmp_path):
    for data in (prep([str(p) for p in files], tmp_path / "c", as_files=False),
                 psannLMDataPrep.from_texts([str(p) for p in files], vocab_size=512, max_length=32, cache_dir=tmp_path / "c",
                                            progress=False)):
        assert text_of(data, data.dataset.stream) == f"{files[0]}<|eos|>{files[1]}<|eos|>"


def test_list_of_ordinary_texts_is_texts(tmp_path):
    data = prep(["hello world", "goodnight moon"], tmp_path / "cache")
    assert text_of(data, data.dataset.stream) == "hello world<|eos|>goodnight moon<|eos|>"


# ------------------------------------------------------------------------------------------ one file, val_split


def test_one_file_corpus_gets_a_validation_set(tmp_path):
    path = tmp_path / "book.txt"
    paras = [p.strip() for doc in DOCS for p in re.split(r"\n\s*\n", doc) if p.strip()]
    path.write_text("\n\n".join(f"#{i}# {p}" for i, p in enumerate(paras)))
    data = prep(str(path), tmp_path / "cache", val_split=0.05)
    assert data.val_dataset is not None and len(data.val_dataset) > 0
    split = data.meta["split"]
    assert split["by"] == "paragraphs" and split["spans"] == len(paras)
    assert abs(split["held_chars"] / split["chars"] - 0.05) < 0.01
    assert f"of {len(paras):,} paragraphs" in repr(data)
    nums = lambda s: {int(n) for n in re.findall(r"#(\d+)# ", text_of(data, s))}
    val, train = nums(data.val_dataset.stream), nums(data.dataset.stream)
    assert val and not val & train and val | train == set(range(len(paras)))
    other = prep(str(path), tmp_path / "cache", val_split=0.05, seed=7)
    assert nums(other.val_dataset.stream) != val, "the seed chooses the spans"


def test_one_file_without_paragraphs_splits_at_lines(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("".join(f"line {i} of a file with no blank line\n" for i in range(300)))
    data = prep(path, tmp_path / "cache", val_split=0.1)
    assert data.meta["split"]["by"] == "lines" and data.meta["split"]["held_spans"] == 30


def test_one_line_corpus_cannot_be_split(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("a single line of text and nothing else")
    with pytest.raises(ValueError, match=r"val_split=0\.05 cannot be honoured: the corpus is a single line"):
        prep(str(path), tmp_path / "cache", val_split=0.05)
    assert not (tmp_path / "cache").exists()


# ------------------------------------------------------------------------------------------ formats not read


@pytest.mark.parametrize("name,content,message", [
    ("table.arrow", b"ARROW1\x00\x00" + bytes(100), r"table\.arrow: an Arrow file, which psann_lm does not "
                                                    r"read; psann_lm reads plain text"),
    ("corpus.txt.xz", b"\xfd7zXZ\x00" + bytes(20), r"corpus\.txt\.xz: an xz-compressed file, which"),
    ("corpus.zip", b"PK\x03\x04" + bytes(20), r"corpus\.zip: a zip file, which psann_lm does not read"),
    ("looks_like_text.txt", b"BZh91AY&SY" + bytes(20), r"looks_like_text\.txt: a bzip2-compressed file"),
    ("looks_like_text.txt", b"PAR1\x15\x04\x15\x00" + bytes(100),
     r"a Parquet file named as text; rename it looks_like_text\.parquet"),
    ("corpus.json", b'[{"text": "hello there"}]', r"corpus\.json: one JSON array, not JSON Lines"),
])
@pytest.mark.parametrize("errors", ["strict", "replace"])
def test_unread_formats_are_refused_before_any_work(tmp_path, name, content, message, errors):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        prep(str(path), tmp_path / "cache", errors=errors)
    assert not (tmp_path / "cache").exists(), "nothing may be written"


def test_binary_file_is_refused_even_with_errors_replace(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match=r"blob\.bin: binary content \(a NUL byte"):
        prep(path, tmp_path / "cache", errors="replace")
    assert not (tmp_path / "cache").exists()


# ------------------------------------------------------------------------------------------ tokenizers without an end token


def sentencepiece_without_eos(path):
    lines = [l for doc in DOCS for l in doc.split("\n") if l.strip()]
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=out, vocab_size=400, eos_id=-1,
                                   hard_vocab_limit=False, minloglevel=2)
    path.write_bytes(out.getvalue())
    return spm.SentencePieceProcessor(model_proto=out.getvalue()).get_piece_size()


def tokenizer_json_without_specials(path):
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(DOCS, trainers.BpeTrainer(vocab_size=400, special_tokens=[], show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(path))
    return tok.get_vocab_size()


@pytest.mark.parametrize("make,name", [(sentencepiece_without_eos, "bare.model"), (tokenizer_json_without_specials, "tokenizer.json")])
def test_prebuilt_tokenizer_without_end_token(tmp_path, make, name):
    path = tmp_path / name
    size = make(path)
    with pytest.raises(ValueError, match=r"has no end-of-sequence token.*pass eos_token='<\|eos\|>'"):
        prep(DOCS, tmp_path / "cache", tokenizer=str(path))
    assert not (tmp_path / "cache").exists()
    data = prep(DOCS, tmp_path / "cache", tokenizer=str(path), eos_token="<|eos|>")
    assert (data.eos_id, data.vocab_size) == (size, size + 1)
    ids = data.dataset.stream.slice(0, len(data.dataset.stream)).tolist()
    assert ids.count(data.eos_id) == len(DOCS) and ids[-1] == data.eos_id
    assert data.tokenizer.eos_id == data.eos_id, "the prepared tokenizer carries its end token"
