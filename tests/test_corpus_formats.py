"""Corpora as they come: JSON Lines, Parquet, gzip and Zstandard, datasets' Dataset and
IterableDataset, generators, mixed lists and YAML sources, each handed over the way a user hands it.
The same documents give the same token stream as .txt files, bad rows and damaged files are refused
naming what is wrong, and the cache key follows the content and text_field."""
import gzip
import json
import os
import subprocess
import sys
import tracemalloc
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
datasets = pytest.importorskip("datasets")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
zstandard = pytest.importorskip("zstandard")

from psann_lm.dataprep import PIECE_CHARS, default_corpus, in_validation, make_corpus
from psann_lm.dataprep import psannLMDataPrep

DOCS = default_corpus()[:30]
ROOT = Path(__file__).resolve().parents[1]


def prep(data, cache, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return psannLMDataPrep(data, **{"max_length": 64, "cache_dir": cache, "progress": False,
                                        **kw})


def stream(data, split="train"):
    s = (data.dataset if split == "train" else data.val_dataset).stream
    return s.slice(0, len(s)).tolist(), s.doc_starts().tolist()


def jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    "One trained tokenizer, so that every form of the corpus is encoded alike."
    return prep(DOCS, tmp_path_factory.mktemp("tok"), vocab_size=1024).tokenizer


@pytest.fixture(scope="module")
def forms(tmp_path_factory):
    "The same DOCS as .txt files and in every file format read."
    d = tmp_path_factory.mktemp("forms")
    for i, doc in enumerate(DOCS): (d / f"doc_{i:02d}.txt").write_text(doc)
    rows = jsonl({"id": i, "text": doc} for i, doc in enumerate(DOCS))
    for name in ("corpus.jsonl", "corpus.ndjson", "corpus.json"): (d / name).write_text(rows)
    (d / "corpus.jsonl.gz").write_bytes(gzip.compress(rows.encode()))
    (d / "corpus.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(rows.encode()))
    (d / "corpus.json.zstd").write_bytes(zstandard.ZstdCompressor().compress(rows.encode()))
    table = pa.table({"id": list(range(len(DOCS))), "text": DOCS})
    pq.write_table(table, d / "corpus.parquet", row_group_size=7)
    return d


# --------------------------------------------------------------------------- every form, one stream


@pytest.mark.parametrize("name", ["corpus.jsonl", "corpus.ndjson", "corpus.json", "corpus.jsonl.gz",
                                  "corpus.jsonl.zst", "corpus.json.zstd", "corpus.parquet"])
def test_row_files_tokenize_as_txt_documents(forms, tok, tmp_path, name):
    reference = prep(str(forms / "doc_*.txt"), tmp_path / "c", tokenizer=tok)
    for given in (str(forms / name), forms / name, [str(forms / name)], [forms / name]):
        data = prep(given, tmp_path / "c", tokenizer=tok)
        assert data.meta["splits"]["train"]["documents"] == len(DOCS)
        assert stream(data) == stream(reference)


def test_glob_of_row_files(forms, tok, tmp_path):
    data = prep(str(forms / "corpus.*"), tmp_path / "c", tokenizer=tok)   # 7 files, 4 formats
    assert data.meta["splits"]["train"]["documents"] == 7 * len(DOCS)
    one, _ = stream(prep(forms / "corpus.jsonl", tmp_path / "c", tokenizer=tok))
    assert stream(data)[0] == one * 7


@pytest.mark.parametrize("form", ["generator", "map", "Dataset", "IterableDataset", "from_texts"])
def test_in_memory_forms_tokenize_as_txt_documents(forms, tok, tmp_path, form):
    reference = prep(str(forms / "doc_*.txt"), tmp_path / "c", tokenizer=tok)
    given = {"generator": lambda: (d for d in DOCS), "map": lambda: map(str, DOCS),
             "Dataset": lambda: datasets.Dataset.from_dict({"text": DOCS}),
             "IterableDataset": lambda: datasets.Dataset.from_dict({"text": DOCS})
                                                    .to_iterable_dataset(),
             "from_texts": lambda: None}[form]()
    if form == "from_texts":            # a generator said to be texts
        data = psannLMDataPrep.from_texts((d for d in DOCS), tokenizer=tok, max_length=64,
                                          cache_dir=tmp_path / "c", progress=False)
    else: data = prep(given, tmp_path / "c", tokenizer=tok)
    assert stream(data) == stream(reference)
    assert not list((tmp_path / "c").glob("spill.tmp-*")), "the spill file is removed"


def test_a_generator_of_the_list_reuses_its_preparation(tok, tmp_path):
    first = prep(DOCS, tmp_path / "c", tokenizer=tok)
    again = prep((d for d in DOCS), tmp_path / "c", tokenizer=tok)
    assert again.reused and again.directory == first.directory


def test_a_spent_generator_is_refused(tok, tmp_path):
    gen = (d for d in DOCS)
    prep(gen, tmp_path / "c", tokenizer=tok)
    with pytest.raises(ValueError, match=r"yielded nothing \(a generator is read only once"):
        prep(gen, tmp_path / "c", tokenizer=tok)


def test_generator_with_a_non_string_is_refused_and_leaves_nothing(tok, tmp_path):
    with pytest.raises(ValueError, match=r"item 2 of the iterable is a dict, not a string"):
        prep((x for x in ["a text", "another", {"text": "a row"}]), tmp_path / "c", tokenizer=tok)
    assert not (tmp_path / "c").exists(), "no spill file, no cache directory left"


def test_dataset_keyed_by_its_fingerprint(tok, tmp_path):
    columns = {"text": DOCS, "title": [d[:20] for d in DOCS]}
    ds = datasets.Dataset.from_dict(columns)
    first = prep(ds, tmp_path / "c", tokenizer=tok)
    assert prep(datasets.Dataset.from_dict(columns), tmp_path / "c", tokenizer=tok).reused
    shuffled = prep(ds.shuffle(seed=0), tmp_path / "c", tokenizer=tok)
    assert not shuffled.reused and stream(shuffled)[0] != stream(first)[0]
    titles = prep(ds, tmp_path / "c", tokenizer=tok, text_field="title")
    assert titles.directory != first.directory
    assert tok.decode(stream(titles)[0]).split("<|eos|>")[:2] == [DOCS[0][:20], DOCS[1][:20]]


def test_long_row_is_cut_as_the_same_txt_file_is(tok, tmp_path):
    long_doc = "".join(f"line {i}: " + "some words " * (i % 13) + "\n" for i in range(12_000))
    assert len(long_doc) > 2 * PIECE_CHARS
    (tmp_path / "long.txt").write_text(long_doc)
    (tmp_path / "long.jsonl").write_text(jsonl([{"text": long_doc}]))
    pq.write_table(pa.table({"text": [long_doc]}), tmp_path / "long.parquet")
    ref = stream(prep(tmp_path / "long.txt", tmp_path / "c", tokenizer=tok))
    for name in ("long.jsonl", "long.parquet"):
        assert stream(prep(tmp_path / name, tmp_path / "c", tokenizer=tok)) == ref
    assert stream(prep([long_doc], tmp_path / "c", tokenizer=tok)) == ref


def test_compressed_text_files_read_as_plain(tok, tmp_path):
    text = "\n\n".join(DOCS)
    (tmp_path / "a.txt").write_text(text)
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress(text.encode()))
    (tmp_path / "a.txt.zst").write_bytes(zstandard.ZstdCompressor().compress(text.encode()))
    ref = prep(tmp_path / "a.txt", tmp_path / "c", tokenizer=tok, doc_sep="\n\n")
    assert ref.meta["splits"]["train"]["documents"] > len(DOCS)
    for name in ("a.txt.gz", "a.txt.zst"):
        again = prep(tmp_path / name, tmp_path / "c", tokenizer=tok, doc_sep="\n\n")
        assert stream(again) == stream(ref)


def test_mixed_list_of_formats_and_source_entries(forms, tok, tmp_path):
    (tmp_path / "titles.jsonl").write_text(jsonl({"title": d[:25], "body": d} for d in DOCS[:5]))
    titles = {"path": str(tmp_path / "titles.jsonl"), "text_field": "title"}
    sources = [forms / "doc_00.txt", titles,
               str(forms / "corpus.parquet")]
    data = prep(sources, tmp_path / "c", tokenizer=tok)
    assert data.meta["splits"]["train"]["documents"] == 1 + 5 + len(DOCS)
    text = tok.decode(stream(data)[0])
    assert text.split("<|eos|>")[1:6] == [d[:25] for d in DOCS[:5]]


# ---------------------------------------------------------------------- the split stays by document


def test_validation_split_is_by_row(tmp_path):
    rows = [f"row number {i}: " + DOCS[i % len(DOCS)][:300] for i in range(200)]
    body = jsonl({"text": r} for r in rows).encode()
    (tmp_path / "rows.jsonl.gz").write_bytes(gzip.compress(body))
    data = prep(tmp_path / "rows.jsonl.gz", tmp_path / "c", vocab_size=1024, val_split=0.05, seed=3)
    assert data.meta["split"]["by"] == "documents"
    held = [r for i, r in enumerate(rows) if in_validation(i, 3, 0.05)]
    assert held and data.meta["splits"]["val"]["documents"] == len(held)
    assert data.tokenizer.decode(stream(data, "val")[0]).split("<|eos|>")[:-1] == held
    train_text = data.tokenizer.decode(stream(data)[0])
    assert not any(r in train_text for r in held)


# ------------------------------------------------------------------------------------ the cache key


def test_cache_key_follows_content_and_text_field(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(jsonl({"text": d, "alt": d[::-1]} for d in DOCS))
    first = prep(path, tmp_path / "c", vocab_size=512)
    assert prep(path, tmp_path / "c", vocab_size=512).reused
    assert not prep(path, tmp_path / "c", vocab_size=512, text_field="alt").reused
    rows = [{"text": d, "alt": d[::-1]} for d in DOCS[:-1]] + [{"text": "new", "alt": ""}]
    path.write_text(jsonl(rows))
    changed = prep(path, tmp_path / "c", vocab_size=512)
    assert not changed.reused and changed.directory != first.directory


def test_parquet_cache_key_follows_column(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": DOCS, "alt": [d.upper() for d in DOCS]}), path)
    a = prep(path, tmp_path / "c", vocab_size=512)
    b = prep(path, tmp_path / "c", vocab_size=512, text_field="alt")
    assert a.directory != b.directory
    assert prep(path, tmp_path / "c", vocab_size=512, text_field="alt").reused


# ---------------------------------------------------------------------- refused, naming the problem


BAD_ROWS = [
    ('{"text": "ok"}\n{"content": "x", "id": 7}\n',
     r"rows\.jsonl: line 2 has no 'text' field \(its fields: 'content', 'id'\)"),
    ('{"text": "ok"}\n{"text": null}\n', r"rows\.jsonl: line 2: its 'text' field is null, not a"),
    ('{"text": "ok"}\n{"text": 42}\n', r"line 2: its 'text' field is a number, not a string"),
    ('["text", "ok"]\n', r"line 1 is an array, not an object with a 'text' field"),
    ('{"text": "ok"}\n{"text": "unterminated\n', r"line 2 is not one JSON value"),
    ('{"text": "ok"}\n' + '{"text": "caf\xe9"}\n', None),     # written as latin-1 below: not UTF-8
]


@pytest.mark.parametrize("content,message", BAD_ROWS)
def test_bad_json_rows_are_refused_before_any_work(tmp_path, content, message):
    path = tmp_path / "rows.jsonl"
    if message is None:
        path.write_bytes(content.encode("latin-1"))
        message = r"rows\.jsonl: line 2 is not valid UTF-8"
    else: path.write_text(content)
    with pytest.raises(ValueError, match=message):
        prep(path, tmp_path / "cache")
    assert not (tmp_path / "cache").exists(), "nothing may be written"


def test_wrong_text_field_names_the_fields_there_are(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(jsonl({"content": d} for d in DOCS))
    with pytest.raises(ValueError, match=r"line 1 has no 'text' field \(its fields: 'content'\); "
                                         r"name the text's field with text_field="):
        prep(path, tmp_path / "cache")
    data = prep(path, tmp_path / "cache", vocab_size=512, text_field="content")
    assert data.meta["splits"]["train"]["documents"] == len(DOCS)


def test_bad_parquet_is_refused(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"body": ["a", "b"], "n": [1, 2]}), path)
    with pytest.raises(ValueError, match=r"t\.parquet has no 'text' column \(its columns: 'body' "
                                         r"\(string\), 'n' \(int64\)\)"):
        prep(path, tmp_path / "cache")
    with pytest.raises(ValueError, match=r"its 'n' column holds int64, not strings"):
        prep(path, tmp_path / "cache", text_field="n")
    for stats in (True, False):
        pq.write_table(pa.table({"text": ["a", "b", "c", None, "e"]}), path, row_group_size=2,
                       write_statistics=stats)
        with pytest.raises(ValueError, match=r"t\.parquet: row 3: its 'text' field is null"):
            prep(path, tmp_path / "cache")
    (tmp_path / "fake.parquet").write_text("not parquet at all")
    with pytest.raises(ValueError, match=r"fake\.parquet: named \.parquet but not a Parquet file"):
        prep(tmp_path / "fake.parquet", tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_bad_datasets_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"the Dataset has no 'text' column \(its columns: 'body'"):
        prep(datasets.Dataset.from_dict({"body": ["a"], "n": [1]}), tmp_path / "cache")
    with pytest.raises(ValueError, match=r"the Dataset's 'n' column holds Value\('int64'\), not"):
        prep(datasets.Dataset.from_dict({"n": [1]}), tmp_path / "cache", text_field="n")
    with pytest.raises(ValueError, match=r"the Dataset: row 1: its 'text' field is null"):
        prep(datasets.Dataset.from_dict({"text": ["a", None]}), tmp_path / "cache")
    splits = datasets.DatasetDict(train=datasets.Dataset.from_dict({"text": ["a"]}),
                                  test=datasets.Dataset.from_dict({"text": ["b"]}))
    with pytest.raises(ValueError, match=r"a DatasetDict of splits \['train', 'test'\]: pass one, "
                                         r"e\.g\. data\['train'\]"):
        prep(splits, tmp_path / "cache")
    def gen():
        yield {"text": "fine"}
        yield {"body": "no text"}
    with pytest.raises(ValueError, match=r"the IterableDataset's row 1 has no 'text' field \(its "
                                         r"fields: 'body'\)"):
        prep(datasets.IterableDataset.from_generator(gen), tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_dataset_null_after_shuffle_fails_leaving_nothing(tmp_path):
    texts = [f"document {i} " * 20 for i in range(50)] + [None]
    ds = datasets.Dataset.from_dict({"text": texts}).shuffle(seed=1)
    with pytest.raises(ValueError, match=r"the Dataset: row \d+: its 'text' field is null"):
        prep(ds, tmp_path / "cache", vocab_size=512)
    assert not any((tmp_path / "cache").rglob("*")), "no shards, no temporary directory"


def _flip(z:bytes) -> bytes: return z[:40] + bytes(x ^ 0xFF for x in z[40:80]) + z[80:]
gz, zst = gzip.compress, zstandard.ZstdCompressor().compress


@pytest.mark.parametrize("name,make,message", [
    ("t.txt.gz", lambda b: gz(b)[:-30], r"t\.txt\.gz: corrupt or truncated gzip data"),
    ("t.txt.gz", lambda b: _flip(gz(b)), r"t\.txt\.gz: corrupt or truncated gzip data"),
    ("t.jsonl.gz", lambda b: gz(b)[:-30], r"t\.jsonl\.gz: corrupt or truncated gzip data"),
    ("t.txt.zst", lambda b: zst(b)[:-30], r"t\.txt\.zst: corrupt or truncated Zstandard data"),
    ("t.txt.zst", lambda b: _flip(zst(b)), r"t\.txt\.zst: corrupt or truncated Zstandard data"),
    ("t.txt.gz", lambda b: b, r"t\.txt\.gz: named \.gz but not gzip-compressed"),
    ("t.txt.zst", lambda b: gz(b), r"t\.txt\.zst: named \.zst but not Zstandard-compressed"),
    ("t.txt", lambda b: gz(b), r"t\.txt: a gzip-compressed file without \.gz in its name; "
                               r"rename it t\.txt\.gz"),
    ("t.jsonl", lambda b: zst(b), r"rename it t\.jsonl\.zst"),
])
def test_damaged_or_misnamed_compressed_files_are_refused(tmp_path, name, make, message):
    body = (jsonl({"text": d} for d in DOCS) if ".jsonl" in name else "\n\n".join(DOCS)).encode()
    (tmp_path / name).write_bytes(make(body))
    with pytest.raises(ValueError, match=message):
        prep(tmp_path / name, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_json_array_and_pretty_json_are_refused(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([{"text": d} for d in DOCS[:3]]))
    with pytest.raises(ValueError, match=r"a\.json: one JSON array, not JSON Lines.*"
                                         r"jq -c '\.\[\]' a\.json > a\.jsonl"):
        prep(tmp_path / "a.json", tmp_path / "cache")
    (tmp_path / "p.json").write_text(json.dumps({"text": DOCS[0]}, indent=2))
    with pytest.raises(ValueError, match=r"p\.json: line 1 is not one JSON value.*a JSON document "
                                         r"spread over several lines"):
        prep(tmp_path / "p.json", tmp_path / "cache")


def test_settings_no_source_uses_are_refused(forms, tmp_path):
    ds = datasets.Dataset.from_dict({"text": DOCS})
    txt, rows = forms / "doc_00.txt", forms / "corpus.jsonl"
    cases = [(dict(data=txt, text_field="body"), r"text_field='body' applies to a source"),
             (dict(data=rows, doc_sep="\n\n"), r"doc_sep='\\n\\n' applies to a plain-"),
             (dict(data=DOCS, doc_sep="\n\n"), r"doc_sep=.* no source here is one \(30 texts\)"),
             (dict(data=ds, errors="replace"), r"errors='replace' applies to a file decoded"),
             (dict(data={"path": str(forms / "doc_00.txt"), "text_field": "body"}),
              r"doc_00\.txt: text_field='body' .* drop text_field"),
             (dict(data=[{"path": str(forms / "corpus.jsonl"), "field": "text"}]),
              r"source 0 .*unknown key\(s\) \['field'\]; a source takes path, text_field"),
             (dict(data=rows, text_field=""), r"text_field must be a non-empty string")]
    for kw, message in cases:
        with pytest.raises(ValueError, match=message):
            prep(kw.pop("data"), tmp_path / "cache", **kw)
    assert not (tmp_path / "cache").exists()


# ------------------------------------------------------------------ streaming: memory does not grow


def _peak_reading(corpus) -> int:
    "Peak Python memory (bytes) of hashing a corpus and reading all its pieces."
    tracemalloc.start()
    try:
        corpus.fingerprint()
        for _ in corpus.pieces(): pass
        return tracemalloc.get_traced_memory()[1]
    finally: tracemalloc.stop()


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.gz", "jsonl.zst", "parquet", "txt.gz"])
def test_reading_memory_does_not_grow_with_the_corpus(tmp_path, fmt):
    doc = "\n".join(DOCS)[:4000]
    peaks = []
    for n in (1000, 4000):                                          # about 4 MB, then 16 MB
        path = tmp_path / f"c{n}.{fmt}"
        if fmt == "parquet":
            with pq.ParquetWriter(path, pa.schema([("text", pa.string())])) as w:
                for _ in range(n // 500): w.write_table(pa.table({"text": [doc] * 500}))
        else:
            body = jsonl({"text": doc} for _ in range(n)) if "jsonl" in fmt else (doc + "\n\n") * n
            pack = {"gz": lambda b: gzip.compress(b, 1), "zst": zst}.get(fmt.split(".")[-1], bytes)
            path.write_bytes(pack(body.encode()))
        peaks.append(_peak_reading(make_corpus(path)))
    assert peaks[1] < 1.3 * peaks[0] + (1 << 20), f"reading memory grew with the corpus: {peaks}"
    assert peaks[1] < 24 << 20, peaks


# -------------------------------------------------------------------- YAML sources, through the CLI


def script(name):
    return str(Path(sys.executable).with_name(name))


def test_yaml_sources_with_text_field_train_through_the_cli(tmp_path):
    (tmp_path / "data").mkdir()
    rows = jsonl({"content": d} for d in DOCS).encode()
    (tmp_path / "data" / "rows.jsonl.gz").write_bytes(gzip.compress(rows))
    pq.write_table(pa.table({"text": DOCS[:10]}), tmp_path / "data" / "more.parquet")
    (tmp_path / "data" / "notes.txt").write_text("\n\n".join(DOCS[:5]))
    (tmp_path / "run.yaml").write_text(
        "model: {base: respsann, d_model: 32, n_layers: 1, n_heads: 2, vocab_size: 400}\n"
        "data:\n"
        "  sources:\n"
        "    - {path: data/rows.jsonl.gz, text_field: content}\n"
        "    - path: data/more.parquet\n"
        "    - data/notes.txt\n"
        "  doc_sep: \"\\n\\n\"\n"
        "  max_length: 32\n"
        "  cache_dir: cache\n"
        "train: {max_steps: 2, batch_size: 2, output_dir: out, progress: false}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([script("psann-lm-train"), "--config", "run.yaml"], capture_output=True,
                          text=True, timeout=600, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metas = [json.loads(p.read_text()) for p in (tmp_path / "cache").glob("*/meta.json")]
    assert len(metas) == 1
    notes_docs = len("\n\n".join(DOCS[:5]).split("\n\n"))
    assert metas[0]["splits"]["train"]["documents"] == len(DOCS) + 10 + notes_docs
    assert "JSON Lines file (text_field='content')" in metas[0]["corpus"]


@pytest.mark.parametrize("source,message,status", [
    ("{path: data/rows.jsonl, field: content}",
     "data.sources: source 0 ({'path': 'data/rows.jsonl', 'field': 'content'}): unknown key(s) "
     "['field']; a source takes path, text_field", 2),
    ("{path: data/notes.txt, text_field: content}",
     "data.sources: data/notes.txt: text_field='content' names the text's field of rows", 2),
    # rows are read when the data is prepared, not when the config is checked: refused then, before
    # any tokenizing, with the same status and message
    ("{path: data/rows.jsonl}", "data/rows.jsonl: line 1 has no 'text' field (its fields: 'content'",
     2),
])
def test_yaml_source_mistakes_are_refused_before_any_work(tmp_path, source, message, status):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rows.jsonl").write_text(jsonl({"content": d} for d in DOCS))
    (tmp_path / "data" / "notes.txt").write_text("notes")
    (tmp_path / "run.yaml").write_text(f"data:\n  sources: [{source}]\n  cache_dir: cache\n")
    proc = subprocess.run([script("psann-lm-train"), "--config", "run.yaml"], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == status and message in proc.stderr, proc.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run.yaml"]


# ------------------------------------------------------------------------ the benchmark's code path


def test_bench_dataprep_measures_every_format_at_a_tiny_size():
    from psann_lm.benchmarks import bench_dataprep
    res = bench_dataprep(throughput_mb=0.2, rss_sizes_mb=(0.1,), runs=1, vocab_size=300)
    assert [r["format"] for r in res["rss_formats"]] == ["jsonl", "parquet"]
    tokens = {r["tokens"] for r in res["rss_formats"]}
    assert len(tokens) == 1, "the same documents as JSON Lines and as Parquet give the same tokens"
    for r in res["rss"] + res["rss_formats"]:
        assert r["peak_rss_during_mb"] >= r["rss_before_mb"] > 0
        assert r["tokens"] > 0 and r["prep_s"] > 0
    assert res["rss_formats"][0]["documents"] > 1 and res["rss"][0]["documents"] == 1
