"""modelbench: an AI-safety benchmark harness (AILuminate-style hazards, any SUT, evaluator ensembles)."""

__version__ = "0.1.0"
