"""The evaluator lab: labelled data, agreement metrics, calibration, evaluation and training.

These tools make and measure the evaluators in `modelbench.graders`; a benchmark run never imports
them (a test checks). The CLI's `graders evaluate` and `graders calibrate` commands and the
`benchmarks/evaluator_*.py` scripts load them on demand; the training scripts run as
`python -m modelbench.graders.lab.train_cross_encoder` and `python -m modelbench.graders.lab.train_minilm`.
"""

from importlib import import_module
from typing import Any

_LAZY = {
    "calibrate": "modelbench.graders.lab.evaluation",
    "default_reliability_path": "modelbench.graders.lab.evaluation",
    "evaluate": "modelbench.graders.lab.evaluation",
    "in_sample_members": "modelbench.graders.lab.evaluation",
    "labelled_rows": "modelbench.graders.lab.evaluation",
    "load_ensemble_config": "modelbench.graders.lab.evaluation",
    "measure_error_rates": "modelbench.graders.lab.evaluation",
    "write_reliability": "modelbench.graders.lab.evaluation",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_LAZY[name]), name)


__all__ = [
    "calibrate",
    "default_reliability_path",
    "evaluate",
    "in_sample_members",
    "labelled_rows",
    "load_ensemble_config",
    "measure_error_rates",
    "write_reliability",
]
