"""The wheel users install carries the C++ sources the CPU kernels are compiled from (psann_lm/csrc)."""
import subprocess
import sys
import zipfile

from conftest import ROOT


def test_wheel_ships_the_kernel_sources(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", str(ROOT),
                           "-w", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    names = zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist()
    shipped = {n.split("/")[-1] for n in names if n.startswith("psann_lm/csrc/")}
    assert shipped == {p.name for p in (ROOT / "psann_lm" / "csrc").iterdir()}, shipped
