"""Where `@evaluator` lived before the registry moved to `modelbench.graders.registry` (issue 26).

Kept so that plugins written against this path still load; new code imports `evaluator` from
`modelbench.graders`, the package's public face.
"""

from modelbench.graders.registry import evaluator, unregister_evaluator

__all__ = ["evaluator", "unregister_evaluator"]
