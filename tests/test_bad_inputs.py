"""Every case of the bad-input catalogue raises its own exception type, with a message that names the argument and its
value, from psann_lm's own checks (never from inside torch or a tokenizer), before any work is done."""
import re
import traceback
from collections import Counter
from pathlib import Path

import pytest

import psann_lm
from bad_input_cases import CASES, WRITTEN, ExitStatus

PACKAGE = Path(psann_lm.__file__).resolve().parent
SURFACES = {"model": "psannLM()", "data": "psannLMDataPrep()", "fit": "fit()", "gen": "generate()", "save": "save()", "load": "psannLM.load()",
            "yaml": "YAML configs", "cli": "psann-lm-train", "bench": "psann_lm_bench"}


def test_catalogue_is_broad_and_well_formed():
    assert len(CASES) >= 30
    assert not [i for i, n in Counter(c.id for c in CASES).items() if n > 1], "case ids must be unique"
    assert all(c.what and callable(c.call) and isinstance(c.exc, type) and issubclass(c.exc, BaseException) and re.compile(c.match) for c in CASES)
    per_surface = Counter(c.id.split("-")[0] for c in CASES)
    assert set(per_surface) == set(SURFACES), f"every surface has cases: {per_surface}"
    assert all(n >= 3 for n in per_surface.values()), per_surface


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, tmp_path, monkeypatch):
    cwd, cache = tmp_path / "cwd", tmp_path / "cache"
    cwd.mkdir()
    monkeypatch.chdir(cwd)                                  # anything written relative to the working directory shows here
    monkeypatch.setenv("PSANN_LM_CACHE", str(cache))        # and anything written to the default cache here
    WRITTEN.clear()
    try:
        result = case.call()
    except BaseException as e:                              # SystemExit included: a library must not exit the interpreter
        err = e
    else:
        pytest.fail(f"{case.id}: no error; returned {result!r:.200}")
    assert type(err) is case.exc, f"{case.id}: {type(err).__name__} instead of {case.exc.__name__}: {err}"
    message = str(err)
    assert re.search(case.match, message), f"{case.id}: the message does not match {case.match!r}:\n{message}"
    assert "Traceback (most recent call last)" not in message
    if isinstance(err, ExitStatus):
        assert err.code in (1, 2), f"{case.id}: exit status {err.code}"
        assert "Traceback (most recent call last)" not in err.stderr, f"{case.id}: the command printed a traceback:\n{err.stderr[-2000:]}"
    else:
        last = Path(traceback.extract_tb(err.__traceback__)[-1].filename).resolve()
        assert PACKAGE in last.parents, f"{case.id}: raised from {last}, not by psann_lm's own checks"
    assert WRITTEN == [], f"{case.id}: work started before the error: {WRITTEN}"
    assert list(cwd.iterdir()) == [] and not cache.exists(), f"{case.id}: files written to the working directory or the cache"
