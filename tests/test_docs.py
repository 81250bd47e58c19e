"""The documentation cannot rot: the README's quickstart runs and its links name real pages, the configuration reference and
the troubleshooting tables match the code, every exported symbol is documented, and the docs checker (.ci/check_docs.py, run
by `make test` after nbdev_proc_nbs) catches what it must."""
import ast
import importlib
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"


def load_checker():
    spec = importlib.util.spec_from_file_location("check_docs", ROOT / ".ci" / "check_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------------------------------------------- the README


def readme_quickstart() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"^```python\n(.*?)^```", text, re.S | re.M)
    assert m, "README.md has no ```python block"
    return m.group(1)


def test_readme_quickstart_runs_as_written(tmp_path):
    code = readme_quickstart()
    assert "psannLMDataPrep(" in code and ".fit(" in code and ".generate(" in code, "the quickstart must prepare, fit and generate"
    env = {**os.environ, "PSANN_LM_CACHE": str(tmp_path / "cache"), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip(), "the quickstart prints the generated text"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"], "the quickstart writes nothing but the cache"


def test_readme_links_name_pages_of_the_site():
    "Every link into the docs site from the README names a page that the notebooks produce."
    site = load_checker().site_url(ROOT)
    links = re.findall(re.escape(site) + r"([\w./-]*)", (ROOT / "README.md").read_text(encoding="utf-8"))
    pages = {"", "index.html"} | {re.sub(r"^\d+[a-zA-Z0-9]*_", "", p.stem.lower()) + ".html" for p in NBS.glob("*.ipynb")}
    assert len(links) >= 6, "the README links to the site and its guides"
    assert [l for l in links if l.split("#")[0] not in pages] == []


# ---------------------------------------------------------------------------------------------------- the configuration reference


def _outputs(cell) -> list[str]:
    out = []
    for o in cell.get("outputs", []):
        data = o.get("data", {})
        if "text/markdown" in data: out.append("md:" + "".join(data["text/markdown"]))
        elif o.get("output_type") == "stream" and o.get("name") == "stdout": out.append("txt:" + "".join(o["text"]))
    return out


def test_configuration_reference_matches_the_code():
    "Run the reference page again: its committed tables (and full example file) must be exactly what the code gives now."
    from execnb.nbio import read_nb
    from execnb.shell import CaptureShell
    path = NBS / "12_guide_configuration.ipynb"
    committed = json.loads(path.read_text(encoding="utf-8"))["cells"]
    tables = [c for c in committed if any(o.startswith("md:| key | type | default | meaning |") for o in _outputs(c))]
    assert len(tables) == 4, f"expected the model, sine_params, data and train tables with committed outputs, found {len(tables)}"
    nb = read_nb(path)
    cwd = os.getcwd()
    try:
        os.chdir(NBS)
        CaptureShell(path).run_all(nb, exc_stop=True)
    finally: os.chdir(cwd)
    fresh = {c["id"]: _outputs(c) for c in json.loads(json.dumps(nb))["cells"]}
    stale = [c["id"] for c in committed if c["cell_type"] == "code" and _outputs(c) != fresh[c["id"]]]
    assert not stale, (f"{path.name}: cells {stale} no longer show what the code gives; re-run the notebook "
                       "(a setting, its type, default or comment changed)")


# ---------------------------------------------------------------------------------------------------- the troubleshooting page

ROW = re.compile(r"^\| `(?P<id>[^`]+)` \| (?P<what>.*?) \| `(?P<error>[^`]+)` \| `(?P<message>.*)` \|$")


def test_troubleshooting_page_shows_every_case_of_the_catalogue():
    "The committed tables list each case of tests/bad_input_cases.py once, with its error and a message its pattern matches."
    sys.path.insert(0, str(ROOT / "tests"))
    try: from bad_input_cases import CASES, ExitStatus
    finally: sys.path.remove(str(ROOT / "tests"))
    cells = json.loads((NBS / "14_guide_troubleshooting.ipynb").read_text(encoding="utf-8"))["cells"]
    rows = [m.groupdict() for c in cells for o in _outputs(c) if o.startswith("md:| case |")
            for m in map(ROW.match, o[3:].splitlines()) if m]
    shown = [r["id"] for r in rows]
    assert len(shown) == len(set(shown)) and sorted(shown) == sorted(c.id for c in CASES), \
        "the page's tables and the catalogue differ: re-run the notebook"
    by_id = {r["id"]: r for r in rows}
    for case in CASES:
        row = by_id[case.id]
        assert row["what"] == case.what, case.id
        assert row["error"].startswith("exit status") if case.exc is ExitStatus else row["error"] == case.exc.__name__, case.id
        assert re.search(case.match, row["message"].replace("\\|", "|")), f"{case.id}: {row['message']!r} no longer matches {case.match!r}"


# ---------------------------------------------------------------------------------------------------- API documentation

CHAPTERS = {"checks": "00_checks", "sine": "00_sine", "kernels": "00a_kernels", "conv_kernels": "00b_conv_kernels", "blocks": "01_blocks", "model": "02_model", "tokenizer": "03_tokenizer", "dataprep": "04_dataprep",
            "trainer": "05_trainer", "generation": "06_generation", "api": "07_api", "hf": "07a_hf", "evaluation": "07b_eval", "cli": "08_cli", "benchmarks": "09_benchmarks", "bench_children": "09a_bench_children"}
# methods that are protocols of torch or accelerate, called by them rather than by users: documented, not given a show_doc
PROTOCOL = {"SineActivation.extra_repr", "TrainState.state_dict", "TrainState.load_state_dict"}


def _own(obj) -> bool: return getattr(obj, "__module__", "").startswith("psann_lm")


def public_symbols(mod):
    "(qualified name, object) of every exported class and function of `mod`, and of the public methods those classes add."
    for name in mod.__all__:
        obj = getattr(mod, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)) or not _own(obj): continue
        yield name, obj
        if inspect.isclass(obj):
            for attr, val in vars(obj).items():
                if attr.startswith("_"): continue
                if any(_own(base) and attr in vars(base) for base in obj.__mro__[1:]): continue   # documented once, on the interface
                fn = (val.fget if isinstance(val, property) else val.__func__ if isinstance(val, (classmethod, staticmethod))
                      else getattr(val, "f", val))         # fastcore's @patch(cls_method=True) wraps the function in an object with .f
                if inspect.isfunction(fn) and _own(fn): yield f"{name}.{attr}", fn


def documented_params(obj) -> list[str]:
    "The parameters of `obj` a reader must be told about (a class's are those of its own `__init__` or its dataclass fields)."
    if inspect.isclass(obj) and not _own(vars(obj).get("__init__", object)): return []
    params = list(inspect.signature(obj).parameters.values())
    if params and params[0].name == "ctx" and params[0].annotation is inspect.Parameter.empty: params = params[1:]   # autograd's context
    # fastcore's docments (and so show_doc) has no place for **kwargs: the docstring says where they go
    return [p.name for p in params if p.name not in ("self", "cls") and p.kind is not p.VAR_KEYWORD]


def _code_cells(nb_name:str) -> list[str]:
    cells = json.loads((NBS / f"{nb_name}.ipynb").read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def show_docs(nb_name:str) -> set[str]:
    "The names a chapter's hand-written `show_doc(...)` cells document."
    return {m for src in _code_cells(nb_name) for m in re.findall(r"^show_doc\(\s*([\w.]+)", src, re.M)}


def auto_docs(nb_name:str) -> set[str]:
    "The names nbdev documents by itself: public top-level definitions in shown export cells (nbdev's `add_show_docs`)."
    from nbdev.showdoc import showdoc_nm
    names = set()
    for src in _code_cells(nb_name):
        flags = {m.group(1) for m in re.finditer(r"^#\|\s*(\w+)", src, re.M)}
        if not flags & {"export", "exports", "exec_doc"} or "hide" in flags: continue
        body = "\n".join(l for l in src.splitlines() if not l.startswith("#|"))
        names |= {showdoc_nm(o) for o in ast.parse(body).body
                  if isinstance(o, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not o.name.startswith("_")}
    return names


def doc_problems() -> list[str]:
    from fastcore.docments import docments
    problems, shown = [], {}
    for mod_name, nb_name in CHAPTERS.items():
        shown[mod_name] = show_docs(nb_name) | auto_docs(nb_name)
    for mod_name, nb_name in CHAPTERS.items():
        mod = importlib.import_module(f"psann_lm.{mod_name}")
        for qual, obj in public_symbols(mod):
            home = obj.__module__.removeprefix("psann_lm.")        # a method patched on from another chapter is shown there
            if home not in CHAPTERS: home = mod_name
            doc = obj.__doc__ or ""
            if inspect.isclass(obj) and doc.startswith(obj.__name__ + "("): doc = ""   # the signature dataclasses write
            if not doc.strip(): problems.append(f"{mod_name}.{qual}: no docstring")
            elif "\n" in doc.strip(): problems.append(f"{mod_name}.{qual}: the docstring is longer than one line")
            params = documented_params(obj)
            if params:
                notes = docments(obj)
                missing = [p for p in params if not notes.get(p)]
                if missing: problems.append(f"{mod_name}.{qual}: no docments comment for {missing}")
            if qual not in PROTOCOL and qual not in shown[home]: problems.append(f"{CHAPTERS[home]}.ipynb: no show_doc({qual}) cell")
    return problems


def test_every_exported_symbol_is_documented():
    problems = doc_problems()
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------------- the docs checker


def test_pandoc_identifiers():
    pid = load_checker().pandoc_id
    assert pid("psannLM.fit") == "psannlm.fit"
    assert pid("measure_peak_flops") == "measure_peak_flops"
    assert pid("Peak FLOP/s and memory") == "peak-flops-and-memory"
    assert pid("`fit` and *friends*") == "fit-and-friends"
    assert pid("The ablation: does the trainable sine help?") == "the-ablation-does-the-trainable-sine-help"
    assert pid("2. Numbers first") == "numbers-first"
    assert pid("???") == "section"


def _nb(*cells) -> str:
    out = []
    for kind, src, *outputs in cells:
        c = dict(cell_type=kind, metadata={}, source=src)
        if kind == "code": c.update(outputs=list(outputs), execution_count=None)
        out.append(c)
    return json.dumps(dict(cells=out, metadata={}, nbformat=4, nbformat_minor=5))


def fake_site(root: Path, extra_page_link: str = "") -> Path:
    (root / "nbs").mkdir(parents=True)
    (root / "settings.ini").write_text("[DEFAULT]\ndoc_host = https://example.github.io\ndoc_baseurl = /proj\n")
    (root / "nbs" / "_quarto.yml").write_text(textwrap.dedent("""\
        website:
          navbar:
            left:
              - href: 01_guide.ipynb
          sidebar:
            contents:
              - index.ipynb
              - section: Guides
                contents: [01_guide.ipynb, 03_gone.ipynb]
        """))
    index = _nb(("raw", "---\noutput-file: index.html\ntitle: Home\n---\n"),
                ("markdown", "# Home\n\n[guide](01_guide.ipynb) and [its part](01_guide.ipynb#part-one), "
                             "[the api](https://example.github.io/proj/guide.html#psannlm.fit), "
                             "![plot](img/plot.png) [elsewhere](https://pytorch.org/#x)\n\n```sh\n[not a link](nowhere.ipynb)\n```\n"
                             "`[code](nowhere.ipynb)`" + extra_page_link))
    guide = _nb(("raw", "---\noutput-file: guide.html\ntitle: Guide\n---\n"),
                ("markdown", "## Part one\n\n```python\n# not a heading\n```\n"),
                ("code", "#| echo: false\n#| output: asis\nshow_doc(psannLM.fit)",
                 dict(output_type="execute_result", data={"text/markdown": "### psannLM.fit\n\ntext"}, metadata={}, execution_count=None)))
    proc = root / "_proc"
    (proc / "img").mkdir(parents=True)
    (proc / "img" / "plot.png").write_bytes(b"png")
    for d in (root / "nbs", proc):
        (d / "index.ipynb").write_text(index); (d / "01_guide.ipynb").write_text(guide)
    (root / "nbs" / "02_orphan.ipynb").write_text(_nb(("markdown", "# Orphan")))
    return root


def test_checker_passes_a_sound_site(tmp_path):
    chk = load_checker()
    root = fake_site(tmp_path)
    assert chk.link_problems(root) == []


def test_checker_finds_missing_pages_and_broken_links(tmp_path):
    chk = load_checker()
    root = fake_site(tmp_path, "\n\n[a](missing.ipynb) [b](01_guide.ipynb#part-two) [c](https://example.github.io/proj/guide.html#nope) "
                               "[d](../README.md) [e](#home) [f](#nowhere) [g](https://example.github.io/proj/other.html)")
    assert chk.sidebar_problems(root) == ["_quarto.yml: 02_orphan.ipynb is not in the sidebar",
                                          "_quarto.yml: the sidebar names 03_gone.ipynb, which does not exist"]
    problems = chk.link_problems(root)
    assert problems == ["index.ipynb: link 'missing.ipynb' points to no page or file of the site",
                        "index.ipynb: link '01_guide.ipynb#part-two': 01_guide.ipynb has no anchor #part-two",
                        "index.ipynb: link 'https://example.github.io/proj/guide.html#nope': 01_guide.ipynb has no anchor #nope",
                        "index.ipynb: link '../README.md' leaves the site",
                        "index.ipynb: link '#nowhere': index.ipynb has no anchor #nowhere",
                        "index.ipynb: link 'https://example.github.io/proj/other.html' points to no page or file of the site"]
    assert chk.main([str(root)]) == 1


def test_the_project_sidebar_lists_every_page():
    assert load_checker().sidebar_problems(ROOT) == []


def test_show_doc_cells_only_where_nbdev_does_not_document():
    "A hand-written `show_doc(X)` for a name nbdev documents by itself is noise in the chapter (it renders once anyway)."
    twice = {nb: sorted(show_docs(nb) & auto_docs(nb)) for nb in CHAPTERS.values()}
    assert not any(twice.values()), {nb: names for nb, names in twice.items() if names}


def test_signatures_render_as_written():
    """show_doc's signature says what the code says: no `NoneType` for an unannotated None default, and a `**kwargs`
    comment is never shown as the return value's (fastcore's docments gives it to the return when that has none)."""
    from fastcore.docments import docments
    from nbdev.showdoc import show_doc
    bad = []
    for mod_name in CHAPTERS:
        for qual, obj in public_symbols(importlib.import_module(f"psann_lm.{mod_name}")):
            if "NoneType" in show_doc(obj)._repr_markdown_(): bad.append(f"{mod_name}.{qual}: NoneType")
            try: src = inspect.getsource(obj)
            except (OSError, TypeError): continue
            kw = re.search(r"^\s*\*\*\w+\s*,?\s*#\s*(.+?)\s*$", src, re.M)
            ret = docments(obj).get("return") if kw else None
            if ret and ret.strip() == kw.group(1).strip(): bad.append(f"{mod_name}.{qual}: **kwargs comment as the return's")
    assert not bad, "\n".join(bad)
