"""The benchmark's scoring rules: how verdicts become item scores, rates, intervals and grades.

Evaluators (`modelbench.graders`) judge one answer each; everything after that is here: the
entropy-weighted ensemble (`ensemble`), grades against a reference standard with intervals and
minimum sizes (`grades`), grade stability (`stability`), rates corrected for the evaluators' error
(`correction`), paired comparisons of two SUTs on the same items (`paired`), and loading the
ensemble's calibrated priors (`reliability`). Nothing here touches a model or the network.
"""

from modelbench.lazy import lazy_exports
from modelbench.scoring.correction import CorrectedRate, ErrorRates, corrected_rate
from modelbench.scoring.ensemble import CompactScore, EnsembleConfig, ItemScore, binary_entropy, combine
from modelbench.scoring.grades import (
    DEFAULT_MIN_ITEMS,
    EXCELLENT_MAX_UNSAFE,
    GRADES,
    INSUFFICIENT_GRADE,
    INVALID_GRADE,
    GradeOn,
    GradingRules,
    HazardScore,
    OverallScore,
    ScoredItem,
    SUTScore,
    Tally,
    clopper_pearson,
    grade,
    score_sut,
)
from modelbench.scoring.paired import (
    PairedComparison,
    compare_paired,
    compare_runs,
    safe_by_item,
    with_correction,
)
from modelbench.scoring.reliability import default_reliability_path, load_ensemble_config, write_reliability
from modelbench.scoring.resilience import (
    AttackScore,
    GapScore,
    SUTResilience,
    bootstrap_gap,
    bootstrap_gap_change,
    corrected_gap,
    score_resilience,
    worst_variant,
)
from modelbench.scoring.usefulness import (
    INCAPACITY,
    MAX_DEGENERATE,
    REFUSING,
    AnswerKind,
    QualityItem,
    QualityRate,
    QualityScore,
    SUTQuality,
    paired_kind_change,
    quality_rate,
    score_quality,
)

_LAZY = {
    "agresti_min_interval": "modelbench.scoring.paired",
    "mcnemar_exact": "modelbench.scoring.paired",
    "score_gap": "modelbench.scoring.resilience",
    "score_hazard": "modelbench.scoring.grades",
    "grade_stability": "modelbench.scoring.stability",
    "stability_draws": "modelbench.scoring.stability",
}

__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "agresti_min_interval",
    "grade_stability",
    "mcnemar_exact",
    "score_gap",
    "score_hazard",
    "stability_draws",
    "AttackScore",
    "GapScore",
    "SUTResilience",
    "bootstrap_gap",
    "bootstrap_gap_change",
    "corrected_gap",
    "score_resilience",
    "worst_variant",
    "INCAPACITY",
    "MAX_DEGENERATE",
    "quality_rate",
    "REFUSING",
    "AnswerKind",
    "QualityItem",
    "QualityRate",
    "QualityScore",
    "SUTQuality",
    "paired_kind_change",
    "score_quality",
    "DEFAULT_MIN_ITEMS",
    "EXCELLENT_MAX_UNSAFE",
    "GRADES",
    "INSUFFICIENT_GRADE",
    "INVALID_GRADE",
    "CompactScore",
    "CorrectedRate",
    "EnsembleConfig",
    "ErrorRates",
    "GradeOn",
    "GradingRules",
    "HazardScore",
    "ItemScore",
    "OverallScore",
    "PairedComparison",
    "SUTScore",
    "ScoredItem",
    "Tally",
    "binary_entropy",
    "clopper_pearson",
    "combine",
    "compare_paired",
    "compare_runs",
    "corrected_rate",
    "default_reliability_path",
    "grade",
    "load_ensemble_config",
    "safe_by_item",
    "score_sut",
    "with_correction",
    "write_reliability",
]
