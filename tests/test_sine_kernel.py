"""The CPU sine kernel's life cycle: built lazily, cached safely, and replaced by the torch formulas when it cannot be built."""
import json
import shutil
import textwrap
from concurrent.futures import ThreadPoolExecutor

from conftest import run_py

COMPARE = textwrap.dedent("""
    import json, warnings, torch
    from psann_lm.kernels import library_error, sine_backend
    from psann_lm.sine import SineActivation, SineConfig
    torch.manual_seed(0)
    act = SineActivation(64, SineConfig(freq_init_std=0.4, damp_init_std=0.01))
    z = torch.randn(4, 16, 64, requires_grad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = act(z)
    grads = torch.autograd.grad(y.sum(), [z] + list(act.parameters()))
    print(json.dumps(dict(y=y.detach().flatten()[:50].tolist(), g=[g.flatten()[:20].tolist() for g in grads],
                          kernel=sine_backend(z) == "cpp", error=library_error("sine"),
                          warnings=[str(w.message) for w in caught])))
""")


def _result(proc):
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_builds_nothing(cache):
    proc = run_py("import psann_lm.sine, psann_lm.benchmarks", env={"PSANN_LM_CACHE": str(cache)})
    assert proc.returncode == 0, proc.stderr
    assert not cache.exists(), "importing psann_lm must not compile or write anything"


def test_first_use_builds_once_then_reuses(cache, tmp_path):
    log = tmp_path / "compiler.log"
    cxx = tmp_path / "logging-c++"  # a compiler that records each call, so a rebuild would show
    cxx.write_text(f'#!/bin/sh\necho called >> "{log}"\nexec {shutil.which("g++") or shutil.which("c++")} "$@"\n')
    cxx.chmod(0o755)
    env = {"PSANN_LM_CACHE": str(cache), "CXX": str(cxx)}
    first = _result(run_py(COMPARE, env=env))
    assert first["kernel"] and not first["warnings"]
    libs = list((cache / "kernels").glob("psann_sine_*.so"))
    assert len(libs) == 1 and log.read_text().count("called") == 1
    second = _result(run_py(COMPARE, env=env))
    assert second["kernel"] and log.read_text().count("called") == 1, "a cached kernel must be reused, not compiled again"
    assert second["y"] == first["y"]


def test_without_compiler_falls_back_with_one_warning(cache):
    with_kernel = _result(run_py(COMPARE, env={"PSANN_LM_CACHE": str(cache / "a")}))
    fallback = _result(run_py(COMPARE, env={"PSANN_LM_CACHE": str(cache / "b"), "CXX": "/nonexistent/c++"}))
    assert not fallback["kernel"] and "/nonexistent/c++" in fallback["error"]
    assert len(fallback["warnings"]) == 1 and "PSANN_SINE_KERNEL=torch" in fallback["warnings"][0]
    assert not list((cache / "b").rglob("*.so")), "a failed build must leave no library behind"
    for a, b in zip(with_kernel["y"], fallback["y"]):
        assert abs(a - b) <= 1e-6 * max(1.0, abs(b))
    for ga, gb in zip(with_kernel["g"], fallback["g"]):
        scale = max(abs(v) for v in gb) or 1.0
        assert max(abs(a - b) for a, b in zip(ga, gb)) <= 1e-5 * scale


def test_forced_cpp_without_compiler_is_an_error(cache):
    proc = run_py(COMPARE, env={"PSANN_LM_CACHE": str(cache), "CXX": "/nonexistent/c++", "PSANN_SINE_KERNEL": "cpp"})
    assert proc.returncode != 0
    assert "PSANN_SINE_KERNEL='cpp'" in proc.stderr and "unavailable" in proc.stderr


def test_torch_choice_never_builds(cache):
    out = _result(run_py(COMPARE, env={"PSANN_LM_CACHE": str(cache), "PSANN_SINE_KERNEL": "torch"}))
    assert not out["kernel"] and not out["warnings"]
    assert not cache.exists()


def test_unknown_choice_is_named(cache):
    proc = run_py(COMPARE, env={"PSANN_LM_CACHE": str(cache), "PSANN_SINE_KERNEL": "fastest"})
    assert proc.returncode != 0 and "PSANN_SINE_KERNEL must be one of" in proc.stderr and "'fastest'" in proc.stderr


def test_concurrent_first_builds_agree(cache):
    env = {"PSANN_LM_CACHE": str(cache)}
    with ThreadPoolExecutor(3) as pool:
        results = [_result(p) for p in pool.map(lambda _: run_py(COMPARE, env=env), range(3))]
    assert all(r["kernel"] for r in results)
    assert results[0]["y"] == results[1]["y"] == results[2]["y"]
    leftovers = [p for p in (cache / "kernels").iterdir() if not p.name.endswith(".so")]
    assert leftovers == [], f"temporary build files left behind: {leftovers}"
