"""Check the processed docs (`_proc/`, written by `nbdev_proc_nbs`) before Quarto renders them.

Fails (exit 1, one line per problem) when a page in `nbs/` is missing from the sidebar of `_quarto.yml`, when the sidebar or
navbar names a page that does not exist, or when an internal link points nowhere: a relative link to a page or file that
is not in the site, a link to `<site-url>/page.html`, or an anchor (`#id`) that no heading or element of the target page
defines. Anchors are computed as Quarto's pandoc computes heading identifiers.

Usage: python .ci/check_docs.py [PROJECT_ROOT]   (default: the folder above .ci)
"""
from __future__ import annotations
import configparser, json, posixpath, re, sys, unicodedata
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

PAGE_SUFFIXES = (".ipynb", ".qmd", ".md")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
EXPLICIT_ID = re.compile(r"\{[^}]*#([A-Za-z][\w.:-]*)[^}]*\}\s*$")
MD_LINK = re.compile(r"!?\[(?:[^\[\]\\]|\\.|\[[^\]]*\])*\]\(\s*<?([^()\s<>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']+)["']""")
HTML_ID = re.compile(r"""\bid\s*=\s*["']([^"']+)["']""")
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.S)
MATH = re.compile(r"\$\$.+?\$\$|\$[^$\n]+\$", re.S)


def pandoc_id(text: str) -> str:
    "The identifier pandoc gives a heading with this text (the `auto_identifiers` rules Quarto uses)."
    text = INLINE_CODE.sub(lambda m: m.group(2), text)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)            # links and images keep their text
    text = re.sub(r"<[^>]+>", "", text)                               # inline html
    text = re.sub(r"\*{1,3}(\S(?:.*?\S)?)\*{1,3}", r"\1", text)        # emphasis; intraword _ is a letter's neighbour, not markup
    text = re.sub(r"(?<!\w)_{1,3}(\S(?:.*?\S)?)_{1,3}(?!\w)", r"\1", text)
    kept = "".join(ch for ch in text if ch in "_-." or ch.isspace() or unicodedata.category(ch)[0] in "LN")
    ident = re.sub(r"\s+", "-", kept.strip()).lower()
    ident = re.sub(r"^[^a-z\u00c0-\uffff]+", "", ident)              # up to the first letter
    return ident or "section"


def _markdown_lines(md: str):
    "Lines of markdown outside fenced code blocks."
    fenced = False
    for line in md.splitlines():
        if FENCE.match(line): fenced = not fenced; continue
        if not fenced: yield line


def markdown_anchors(md: str) -> list[str]:
    "Identifiers of the headings (and explicit `{#id}` attributes) in a piece of markdown, in order."
    out = []
    for line in _markdown_lines(md):
        m = HEADING.match(line)
        if m:
            explicit = EXPLICIT_ID.search(m.group(2))
            out.append(explicit.group(1) if explicit else pandoc_id(m.group(2)))
        else: out += [e for e in re.findall(r"\[[^\]]*\]\{#([A-Za-z][\w.:-]*)", line)]
    return out + HTML_ID.findall(md)


def markdown_links(md: str) -> list[str]:
    "Link and image targets in a piece of markdown, outside code blocks, inline code and math."
    found = []
    for line in _markdown_lines(md):
        line = MATH.sub("", INLINE_CODE.sub("", line))
        found += MD_LINK.findall(line) + HTML_LINK.findall(line)
    return found


def _text(x) -> str: return "".join(x) if isinstance(x, list) else (x or "")


class Page:
    "One processed page: where it lives, the html file Quarto writes for it, its anchors and its links."
    def __init__(self, path: Path, root: Path):
        self.path, self.rel = path, path.relative_to(root)
        self.output, md_parts = self.rel.with_suffix(".html").as_posix(), []
        if path.suffix == ".ipynb":
            nb = json.loads(path.read_text(encoding="utf-8"))
            for cell in nb.get("cells", []):
                src = _text(cell.get("source"))
                if cell["cell_type"] == "raw" and src.lstrip().startswith("---"):
                    front = yaml.safe_load(src.strip().strip("-")) or {}
                    if front.get("output-file"): self.output = (self.rel.parent / front["output-file"]).as_posix()
                elif cell["cell_type"] == "markdown": md_parts.append(src)
                elif cell["cell_type"] == "code":
                    asis = re.search(r"^#\|\s*output:\s*asis\s*$", src, re.M) is not None
                    for o in cell.get("outputs", []):
                        data = o.get("data", {})
                        if "text/markdown" in data: md_parts.append(_text(data["text/markdown"]))
                        elif "text/html" in data: md_parts.append(_text(data["text/html"]))
                        elif asis and o.get("output_type") == "stream": md_parts.append(_text(o.get("text")))
        else:
            text = path.read_text(encoding="utf-8")
            if text.startswith("---"):
                front = yaml.safe_load(text.split("---", 2)[1]) or {}
                if front.get("output-file"): self.output = (self.rel.parent / front["output-file"]).as_posix()
            md_parts.append(text)
        anchors = []
        for part in md_parts: anchors += markdown_anchors(part)
        self.anchors = set()
        for a in anchors:                                  # pandoc numbers repeated identifiers: x, x-1, x-2, ...
            name, n = a, 0
            while name in self.anchors: n += 1; name = f"{a}-{n}"
            self.anchors.add(name)
        self.links = [l for part in md_parts for l in markdown_links(part)]


def site_url(project: Path) -> str:
    "The site's address from settings.ini (doc_host + doc_baseurl), with a trailing slash."
    cfg = configparser.ConfigParser(); cfg.read(project / "settings.ini")
    d = cfg["DEFAULT"]
    return "/".join(x for x in (d["doc_host"].rstrip("/"), d.get("doc_baseurl", "").strip("/")) if x) + "/"


def _entries(items) -> list[str]:
    "Every page an item list of a Quarto sidebar or navbar names (strings, {href}, {file}, nested {contents})."
    out = []
    for it in items or []:
        if isinstance(it, str): out.append(it)
        elif isinstance(it, dict):
            for key in ("href", "file"):
                if isinstance(it.get(key), str): out.append(it[key])
            for key in ("contents", "menu"):
                if isinstance(it.get(key), list): out += _entries(it[key])
                elif isinstance(it.get(key), str): out.append(it[key])
    return out


def sidebar_problems(project: Path) -> list[str]:
    "Pages of nbs/ that the sidebar leaves out, and sidebar or navbar entries that name no page."
    nbs = project / "nbs"
    cfg = yaml.safe_load((nbs / "_quarto.yml").read_text())
    site = cfg.get("website", {})
    sidebars = site.get("sidebar", {})
    sidebars = sidebars if isinstance(sidebars, list) else [sidebars]
    listed = [e for sb in sidebars for e in _entries(sb.get("contents"))]
    nav = site.get("navbar", {})
    linked = _entries(nav.get("left")) + _entries(nav.get("right"))
    pages = sorted(p.relative_to(nbs).as_posix() for p in nbs.rglob("*") if p.suffix in PAGE_SUFFIXES
                   and not any(part.startswith((".", "_")) for part in p.relative_to(nbs).parts))
    problems = [f"_quarto.yml: {p} is not in the sidebar" for p in pages if p not in listed]
    for where, entries in (("sidebar", listed), ("navbar", linked)):
        for e in entries:
            if urlsplit(e).scheme: continue
            if not (nbs / urlsplit(e).path).exists(): problems.append(f"_quarto.yml: the {where} names {e}, which does not exist")
    return problems


def link_problems(project: Path, proc: Path | None = None) -> list[str]:
    "Internal links in the processed pages that point to no page, file or anchor of the site."
    proc = proc or project / "_proc"
    if not proc.is_dir(): return [f"{proc} does not exist: run nbdev_proc_nbs first"]
    pages = [Page(p, proc) for p in sorted(proc.rglob("*")) if p.suffix in PAGE_SUFFIXES
             and not any(part.startswith((".", "_")) for part in p.relative_to(proc).parts)]
    by_source = {p.rel.as_posix(): p for p in pages}
    by_output = {p.output: p for p in pages}
    base, problems = site_url(project), []
    for page in pages:
        for link in page.links:
            if link.startswith(base): target_path, frag = (urlsplit(link[len(base):]).path or "index.html"), urlsplit(link).fragment
            elif urlsplit(link).scheme or link.startswith("//"): continue       # another site
            else:
                parts = urlsplit(link)
                if not parts.path: target_path = page.rel.as_posix()
                else: target_path = (page.rel.parent / unquote(parts.path)).as_posix()
                frag = parts.fragment
            norm = posixpath.normpath(target_path)
            if norm.startswith(("../", "/")) or norm == "..":
                problems.append(f"{page.rel}: link {link!r} leaves the site"); continue
            target = by_source.get(norm) or by_output.get(norm) or (by_output.get(norm.rstrip("/") + "/index.html"))
            if target is None:
                if (proc / norm).is_file() and not frag: continue              # an image or other file the site carries
                problems.append(f"{page.rel}: link {link!r} points to no page or file of the site"); continue
            if frag and unquote(frag) not in target.anchors:
                problems.append(f"{page.rel}: link {link!r}: {target.rel} has no anchor #{frag}")
    return problems


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    project = Path(argv[0]) if argv else Path(__file__).resolve().parents[1]
    problems = sidebar_problems(project) + link_problems(project)
    for p in problems: print(f"docs: {p}")
    n = len(list((project / "_proc").rglob("*.ipynb"))) if (project / "_proc").is_dir() else 0
    print(f"docs: {n} processed notebooks checked; " + (f"{len(problems)} problem(s)" if problems else "sidebar complete, every internal link resolves"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
