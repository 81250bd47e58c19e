import os, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_py(code: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    "Run `code` in a fresh interpreter (so module state and caches start empty) and return the finished process."
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=timeout, cwd=ROOT)


@pytest.fixture
def cache(tmp_path):
    "An empty psann_lm cache directory for one test."
    return tmp_path / "cache"
