"""The evaluator lab: labelled data, agreement metrics, calibration, evaluation and training.

These tools make and measure the evaluators in `modelbench.graders`; a benchmark run never imports
them (a test checks). The CLI's `graders evaluate` and `graders calibrate` commands and the
`benchmarks/evaluator_*.py` scripts load them on demand; the training scripts run as
`python -m modelbench.graders.lab.train_cross_encoder` and `python -m modelbench.graders.lab.train_minilm`.
"""
