"""Why a model was blessed or not: the Evaluator's gate, in sentences.

Pure functions of what the gate saw (:class:`GateOutcome`) and of its settings. The collector
fills the outcome from TFMA's output; the sentences end up in the printed summary,
``summary.json`` and ``index.html``.
"""

import dataclasses
from typing import Mapping, Optional

from components import forecast_metrics
from pipeline.config import EvaluationConfig

_LABELS = {forecast_metrics.MODEL: "model", forecast_metrics.PERSISTENCE: "persistence",
           forecast_metrics.SEASONAL_NAIVE: "best seasonal naive"}


def label(forecaster: str) -> str:
    """How the report names a forecaster: ``model``, ``persistence``, ``seasonal naive 48``."""
    if forecaster in _LABELS:
        return _LABELS[forecaster]
    return forecaster.replace("_", " ")


@dataclasses.dataclass(frozen=True)
class GateOutcome:
    """What the Evaluator's gate saw on the eval split, and what it decided.

    Attributes:
      blessed: Whether the Evaluator blessed the model.
      failed: Names of the metrics whose threshold failed (``skill``, ``mae``).
      mae: The model's eval MAE.
      skill: The model's eval skill (its MAE over the better naive MAE).
      naive_mae: Eval MAE of each naive forecaster, by forecaster name.
      baseline_mae: Eval MAE of the latest blessed model, or None when there was none.
      coverage: Eval coverage of each central interval, by nominal coverage (quantile models).
    """

    blessed: bool
    failed: frozenset[str]
    mae: float
    skill: float
    naive_mae: Mapping[str, float]
    baseline_mae: Optional[float]
    coverage: Mapping[float, float] = dataclasses.field(default_factory=dict)


def skill_reason(outcome: GateOutcome, max_skill: float) -> str:
    """How the skill bound went, against the better of the naive forecasts."""
    naive = outcome.naive_mae
    best = min(naive, key=lambda name: naive[name])
    verdict = "is not below" if forecast_metrics.SKILL in outcome.failed else "is below"
    return (f"skill {outcome.skill:.3f} {verdict} {max_skill:g}: eval MAE {outcome.mae:.4g} against "
            f"{label(best)}'s {naive[best]:.4g}, the best naive forecast")


def baseline_reason(outcome: GateOutcome, regression_tolerance: float) -> str:
    """How the comparison with the latest blessed model went, or that there was none."""
    baseline = outcome.baseline_mae
    if baseline is None:
        return "no earlier blessed model to compare with (first blessing: the skill bound alone applies)"
    # A baseline MAE of 0 leaves the relative change undefined, not infinite.
    change = (outcome.mae - baseline) / baseline if baseline else float("nan")
    verdict = "more than" if forecast_metrics.metric_name("mae") in outcome.failed else "within"
    return (f"eval MAE {outcome.mae:.4g} against the latest blessed model's {baseline:.4g} "
            f"({change:+.1%}): {verdict} the {regression_tolerance:.0%} tolerance")


def coverage_reason(outcome: GateOutcome, tolerance: float) -> str:
    """How the coverage bounds went: every interval's eval coverage against its nominal coverage."""
    outside = [c for c in outcome.coverage if forecast_metrics.coverage_name(c) in outcome.failed]
    listed = ", ".join(f"{c:.0%} interval {outcome.coverage[c]:.1%}" for c in outcome.coverage)
    verdict = "not all within" if outside else "all within"
    return f"eval coverage {listed}: {verdict} {tolerance:.0%} of nominal"


def reasons(outcome: GateOutcome, evaluation: EvaluationConfig) -> tuple[str, ...]:
    """One sentence per check of the gate, saying how it went.

    A third sentence says so when the Evaluator refused the model though no check failed, so a
    refusal never reads as a pass.
    """
    found = [skill_reason(outcome, evaluation.max_skill),
             baseline_reason(outcome, evaluation.regression_tolerance)]
    if evaluation.coverage_tolerance > 0 and outcome.coverage:
        found.append(coverage_reason(outcome, evaluation.coverage_tolerance))
    if not outcome.blessed and not outcome.failed:
        found.append("the Evaluator did not bless the model (see its validation result)")
    return tuple(found)
