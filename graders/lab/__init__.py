"""The evaluator lab: labelled data, agreement metrics, calibration, evaluation and training.

These tools make and measure the evaluators in `modelbench.graders`; a benchmark run never imports
them (a test checks). The CLI's `graders evaluate` and `graders calibrate` commands and the
`benchmarks/evaluator_*.py` scripts load them on demand; the training scripts run as
`python -m modelbench.graders.lab.train_cross_encoder` and `python -m modelbench.graders.lab.train_minilm`.
"""

from modelbench.lazy import lazy_exports

_LAZY = {
    "calibrate": "modelbench.graders.lab.evaluation",
    "evaluate": "modelbench.graders.lab.evaluation",
    "in_sample_members": "modelbench.graders.lab.evaluation",
    "labelled_rows": "modelbench.graders.lab.evaluation",
    "measure_error_rates": "modelbench.graders.lab.evaluation",
}

__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "calibrate",
    "evaluate",
    "in_sample_members",
    "labelled_rows",
    "measure_error_rates",
]
