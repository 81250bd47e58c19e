"""The training command lines the README and the guides tell a user to type, run as written."""
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NBS = ROOT / "nbs"
DOCS = [ROOT / "README.md", NBS / "index.ipynb", *sorted(NBS.glob("1[0-4]_*.ipynb"))]
PROGRAMS = r"(?:accelerate launch|python -m psann_lm\.cli|psann-lm-train|psann_lm_demo)"
COMMAND = re.compile(rf"^(?:[A-Z_]+=\S+ )*{PROGRAMS}\b")   # optionally after VAR=value settings
TWO_CPUS = ("ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2"
            " -m psann_lm.cli --config run.yaml")

# Run as written, each in a fresh directory holding run.yaml, the guide's ddp.yaml, a.txt and b.txt.
RUN = [
    "psann-lm-train --config run.yaml",
    "psann-lm-train --config run.yaml train.max_steps=20",
    "psann-lm-train --config run.yaml train.max_steps=200 model.d_model=256",
    "psann-lm-train --config run.yaml train.max_steps=200 model.d_model=256"
    " data.sources=[a.txt,b.txt]",
    "accelerate launch --num_processes 4 -m psann_lm.cli --config run.yaml",   # no GPU: one process
    TWO_CPUS,
    "accelerate launch --multi_gpu --num_processes 4 -m psann_lm.cli --config run.yaml",
    "accelerate launch --config_file ddp.yaml -m psann_lm.cli --config run.yaml",
    "accelerate launch --config_file ddp.yaml -m psann_lm.cli --config run.yaml"
    " train.max_steps=100",
]
# Documented, but not runnable here as written: why.
NOT_RUN = {
    "accelerate launch --config_file ddp.yaml -m psann_lm.cli --config run.yaml train.fsdp=true":
        "four processes sharding a model: on two CPU processes FSDP is run by tests/test_fsdp.py",
    "accelerate launch --multi_gpu --num_machines 2 --machine_rank 0 --main_process_ip 10.0.0.1 "
    "--main_process_port 29500 --num_processes 16 -m psann_lm.cli --config run.yaml":
        "needs two machines, the first at 10.0.0.1",
    "accelerate launch --config_file ddp.yaml train.py":
        "launches the user's own script, not psann_lm's",
}

RUN_YAML = """\
model:
  base: respsann
  d_model: 32
  n_layers: 1
  n_heads: 2
  vocab_size: 300
data:
  sources: [corpus.txt]
  doc_sep: "\\n\\n"
  max_length: 16
  val_split: 0.1
  cache_dir: cache
train:
  max_steps: 3
  batch_size: 2
  warmup_steps: 1
  log_interval: 1
  output_dir: out
  progress: false
"""


def doc_text(path: Path) -> str:
    "The text of a README, or of a notebook's markdown cells (never its outputs)."
    if path.suffix != ".ipynb": return path.read_text()
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def documented_commands(text: str) -> set[str]:
    "Command lines in ```sh blocks (no comments, `\\` lines joined) and inline code with options."
    found = set()
    for block in re.findall(r"```(?:sh|bash|console)\n(.*?)```", text, re.S):
        for line in re.sub(r"\\\s*\n\s*", " ", block).splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if COMMAND.match(line): found.add(" ".join(line.split()))
    for span in re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S)):
        if COMMAND.match(span) and " --" in span: found.add(" ".join(span.split()))
    return found


def test_every_documented_command_is_run_or_explained():
    docs = set().union(*(documented_commands(doc_text(p)) for p in DOCS))
    assert TWO_CPUS in docs
    assert docs - set(RUN) - set(NOT_RUN) == set(), "a documented command neither run nor explained"
    assert set(RUN) | set(NOT_RUN) <= docs, "a command here that is no longer documented"


def ddp_yaml() -> str:
    "The accelerate config file the multi-GPU guide writes (MULTI_GPU, 4 processes)."
    cells = json.loads((NBS / "11_guide_multi_gpu.ipynb").read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return re.search(r'ddp_yaml = """\\\n(.*?)"""', code, re.S).group(1)


@pytest.fixture
def workdir(tmp_path):
    "A directory with the tiny run.yaml, its corpus, a.txt, b.txt and the guide's ddp.yaml."
    docs = [f"Document {i}: the quick brown fox jumps over the lazy dog {i % 7} times."
            for i in range(200)]
    (tmp_path / "corpus.txt").write_text("\n\n".join(docs))
    (tmp_path / "a.txt").write_text("\n\n".join(docs[:100]))
    (tmp_path / "b.txt").write_text("\n\n".join(docs[100:]))
    (tmp_path / "run.yaml").write_text(RUN_YAML)
    (tmp_path / "ddp.yaml").write_text(ddp_yaml())
    return tmp_path


def run_shell(command: str, cwd: Path, env: dict, timeout: int = 900):
    "Run `command` with bash in its own process group, killed whole if it outlives `timeout`."
    proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, text=True,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try: out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{command!r} ran over {timeout} s: {(out + err)[-4000:]}")
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


@pytest.mark.parametrize("command", RUN, ids=str)
def test_documented_command_runs(workdir, command):
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"   # the venv's programs first
    env = {**os.environ, "PATH": path,
           "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1",
           "HF_HOME": str(workdir / "hf"),          # no accelerate default config of the user's
           "PSANN_LM_DIST_TIMEOUT": "120"}          # a stuck collective fails instead of hanging
    proc = run_shell(command, workdir, env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "unrecognized arguments" not in output
    assert sorted(workdir.rglob("metrics.jsonl")) == [workdir / "out" / "metrics.jsonl"]
    summary = "metrics: out/metrics.jsonl; model: out/model"
    assert proc.stdout.count(summary) == 1, proc.stdout      # printed by the main process only
    assert proc.stdout.count("validation loss") == 1, proc.stdout
    from psann_lm import psannLM
    model = psannLM.load(workdir / "out" / "model")
    assert model.config.d_model == (256 if "model.d_model=256" in command else 32)
    assert isinstance(model.generate("Document 3:", max_new_tokens=3, seed=0), str)
