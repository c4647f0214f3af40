"""modelbench: an AI-safety benchmark harness (AILuminate-style hazards, any SUT, evaluator ensembles).

The names below are the harness's public API, loaded on first use (PEP 562), so that
`import modelbench` stays instant:

    from modelbench import RunRequest, Store, UserError, execute, prepare

The packages have their own faces: `modelbench.suts` (SUTs and their registry), `modelbench.graders`
(evaluators), `modelbench.scoring`, `modelbench.prompts`, `modelbench.hazards`, `modelbench.reports`.
"""

from modelbench.lazy import lazy_exports
from modelbench.version import __version__

# Name -> the module that defines it; a moved name changes only its row here.
_LAZY = {
    # errors
    "UserError": "modelbench.errors",
    # the store of a run's answers and verdicts
    "LOST_FAILURE": "modelbench.store",
    "SCHEMA_VERSION": "modelbench.store",
    "STORE_NAME": "modelbench.store",
    "Store": "modelbench.store",
    "open_store": "modelbench.store",
    # running a benchmark
    "RunRequest": "modelbench.run_plan",
    "execute": "modelbench.runner",
    "prepare": "modelbench.runner",
    "Engine": "modelbench.engine",
    "benign_sample": "modelbench.run_items",
    "in_shard": "modelbench.run_items",
    "select_items": "modelbench.run_items",
    # a finished run: its record again, its failures, a standard from it, answer quality
    "rebuild_record": "modelbench.rescore",
    "ErrorTally": "modelbench.failures",
    "error_lines": "modelbench.failures",
    "reason_of": "modelbench.failures",
    "standard_from_run": "modelbench.calibrate",
    "quality_error_rates": "modelbench.quality",
    # specs: the text forms of SUTs and evaluators
    "GRADER_KINDS": "modelbench.specs",
    "MINILM_CE_DTYPES": "modelbench.specs",
    "PluginGraderSpec": "modelbench.specs",
    "RegistrySpec": "modelbench.specs",
    "SUTSpec": "modelbench.specs",
    "parse_grader_spec": "modelbench.specs",
    "parse_sut_spec": "modelbench.specs",
    "TransformSpec": "modelbench.specs",
    # small utilities
    "file_sha256": "modelbench.hashing",
    "stable_hash": "modelbench.hashing",
    "get_secret": "modelbench.secrets",
}

__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "Engine",
    "ErrorTally",
    "GRADER_KINDS",
    "LOST_FAILURE",
    "MINILM_CE_DTYPES",
    "PluginGraderSpec",
    "RegistrySpec",
    "RunRequest",
    "SCHEMA_VERSION",
    "STORE_NAME",
    "SUTSpec",
    "Store",
    "UserError",
    "__version__",
    "benign_sample",
    "error_lines",
    "execute",
    "file_sha256",
    "get_secret",
    "in_shard",
    "open_store",
    "parse_grader_spec",
    "parse_sut_spec",
    "TransformSpec",
    "prepare",
    "quality_error_rates",
    "reason_of",
    "rebuild_record",
    "select_items",
    "stable_hash",
    "standard_from_run",
]
