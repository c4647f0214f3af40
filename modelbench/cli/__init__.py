"""The `modelbench` command line.

`main` is the click group behind the `modelbench` console script; each module adds its commands
to it: `run` (run, calibrate), `stores` (compare, report, leaderboard, merge, export), `sut_tools`
(compress), `prompt_tools` (prompts render/stats), `grader_tools` (graders evaluate/calibrate) and
`lists` (list suts/hazards/prompt-sets/graders). Commands import what they need when they run, so
`modelbench --help` loads no model library.
"""

# Each module adds its commands to `main` when imported.
from modelbench.cli import grader_tools, lists, prompt_tools, run, stores, sut_tools  # noqa: F401
from modelbench.cli.app import main

__all__ = ["main"]
