"""psann_lm: language models whose MLPs use PSANN's parametric sine activation."""
__version__ = "0.0.1"

# The ops of the kernels chapters (torch.ops.psann_lm.*) are registered on import; they need
# only torch.
from . import kernels, conv_kernels  # noqa: E402,F401

# The two names of the product's API (and the exception a stopped fit raises), imported on first
# use so that `import psann_lm.sine` stays light.
_LAZY = {"psannLM": "psann_lm.api", "psannLMDataPrep": "psann_lm.dataprep",
         "TrainingStopped": "psann_lm.trainer"}
__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib
        if name == "psannLM":
            importlib.import_module("psann_lm.evaluation")   # adds loglikelihood & co. to psannLM
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'psann_lm' has no attribute {name!r}")
