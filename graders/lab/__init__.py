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
    # labelled data
    "LabelledExchange": "modelbench.graders.lab.labels",
    "load_diasafety": "modelbench.graders.lab.labels",
    "load_do_not_answer": "modelbench.graders.lab.labels",
    "load_generic": "modelbench.graders.lab.labels",
    "load_gptfuzz": "modelbench.graders.lab.labels",
    "load_labels": "modelbench.graders.lab.labels",
    "load_xstest": "modelbench.graders.lab.labels",
    "load_xstest_folder": "modelbench.graders.lab.labels",
    "split_by_prompt": "modelbench.graders.lab.labels",
    "load_jbb_artifacts": "modelbench.graders.lab.judged_labels",
    "load_past_tense": "modelbench.graders.lab.judged_labels",
    # agreement metrics and cross-validation
    "agreement": "modelbench.graders.lab.metrics",
    "reliability": "modelbench.graders.lab.metrics",
    "binary_metrics": "modelbench.graders.lab.minilm_cv",
    "group_folds": "modelbench.graders.lab.minilm_cv",
    "out_of_fold_p": "modelbench.graders.lab.minilm_cv",
    "youden_j": "modelbench.graders.lab.minilm_cv",
    "in_sample_on": "modelbench.graders.lab.minilm_oof",
    # leave-one-source-out choices and error rates
    "Decider": "modelbench.graders.lab.loso",
    "coverage_checks": "modelbench.graders.lab.loso",
    "load_scores": "modelbench.graders.lab.loso",
    "loso_error_rates": "modelbench.graders.lab.loso",
    "nested_deciders": "modelbench.graders.lab.loso",
    "per_source_rates": "modelbench.graders.lab.loso",
    # training data for the cross-encoder
    "row_weights": "modelbench.graders.lab.train_cross_encoder",
    "with_hard_negatives": "modelbench.graders.lab.train_cross_encoder",
}

__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "agreement",
    "binary_metrics",
    "calibrate",
    "coverage_checks",
    "Decider",
    "evaluate",
    "group_folds",
    "in_sample_members",
    "in_sample_on",
    "labelled_rows",
    "LabelledExchange",
    "load_diasafety",
    "load_do_not_answer",
    "load_generic",
    "load_gptfuzz",
    "load_jbb_artifacts",
    "load_labels",
    "load_past_tense",
    "load_scores",
    "load_xstest",
    "load_xstest_folder",
    "loso_error_rates",
    "measure_error_rates",
    "nested_deciders",
    "out_of_fold_p",
    "per_source_rates",
    "reliability",
    "row_weights",
    "split_by_prompt",
    "with_hard_negatives",
    "youden_j",
]
