"""Label schemes and decision rules.

A label scheme turns the two models' scores for a prompt into a training
target: a class label (RoRF's four labels) or a number (the score gap). A
decision rule turns the scorer's output, class probabilities or a predicted
gap, into the single number in [0, 1] compared with the routing threshold:
the higher it is, the more the prompt needs model A. Both are saved by name
in router metadata.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import numpy as np

from rorf_core.errors import InvalidConfigError, RouterFormatError

__all__ = [
    "RORF_LABELS",
    "LabelScheme",
    "DecisionRule",
    "label_schemes",
    "decision_rules",
    "get_label_scheme",
    "get_decision_rule",
    "class_probability",
    "gain_to_score",
    "check_rule_fits_scheme",
]

#: RoRF's four labels, as used by the pre-trained RoRF routers on the hub.
RORF_LABELS = {
    "a_better": 0,
    "tie_both_zero": 1,
    "tie_both_nonzero": 2,
    "b_better": 3,
}


def _rorf_labels(scores_a: np.ndarray, scores_b: np.ndarray) -> np.ndarray:
    labels = np.full(scores_a.shape, RORF_LABELS["tie_both_nonzero"], dtype=np.int64)
    labels[scores_a > scores_b] = RORF_LABELS["a_better"]
    labels[scores_a < scores_b] = RORF_LABELS["b_better"]
    tie_at_zero = (scores_a == scores_b) & (scores_a == 0)
    labels[tie_at_zero] = RORF_LABELS["tie_both_zero"]
    return labels


def _score_gap(scores_a: np.ndarray, scores_b: np.ndarray) -> np.ndarray:
    return scores_a - scores_b


@attrs.frozen(kw_only=True)
class LabelScheme:
    """A named way to label a prompt from the two models' scores.

    ``kind`` is ``"classes"`` for class labels, fitted by a classifier, or
    ``"regression"`` for a numeric target, fitted by a regressor.
    """

    name: str
    kind: str
    labels: dict[str, int]
    assign: Callable[[np.ndarray, np.ndarray], np.ndarray] = attrs.field(repr=False)
    description: str = ""

    @property
    def is_regression(self) -> bool:
        """Whether the target is a number rather than a class label."""
        return self.kind == "regression"

    def __call__(self, scores_a: np.ndarray, scores_b: np.ndarray) -> np.ndarray:
        return self.assign(np.asarray(scores_a, float), np.asarray(scores_b, float))

    def label_names(self) -> dict[int, str]:
        """Return the mapping from label number to label name."""
        return {number: name for name, number in self.labels.items()}


def class_probability(proba: np.ndarray, classes: np.ndarray, label: int) -> np.ndarray:
    """Return the column of ``proba`` for ``label``, or zeros when it was never seen.

    Columns are found through ``classes`` (the scorer's ``classes_``), never
    by position, so a label missing from the training rows cannot shift the
    others.
    """
    matches = np.flatnonzero(np.asarray(classes) == label)
    if matches.size == 0:
        return np.zeros(proba.shape[0], dtype=np.float64)
    return proba[:, int(matches[0])].astype(np.float64, copy=False)


@attrs.frozen(kw_only=True)
class DecisionRule:
    """A named function from class probabilities to the routing score.

    For a regression label scheme the rule ``predicted_gain`` maps the
    predicted gap ``score_A - score_B`` from ``[-scale, scale]`` to [0, 1];
    ``weights`` is empty then.
    """

    name: str
    description: str
    kind: str = "classes"
    #: label name -> weight; the score is the weighted sum of probabilities.
    weights: dict[str, float]
    #: constant added to the weighted sum, so every score lies in [0, 1].
    offset: float = 0.0

    def __call__(
        self, proba: np.ndarray, classes: np.ndarray, labels: dict[str, int]
    ) -> np.ndarray:
        score = np.full(proba.shape[0], self.offset, dtype=np.float64)
        for label_name, weight in self.weights.items():
            score += weight * class_probability(proba, classes, labels[label_name])
        return score


_LABEL_SCHEMES = {
    "rorf": LabelScheme(
        name="rorf",
        kind="classes",
        labels=RORF_LABELS,
        assign=_rorf_labels,
        description="RoRF's four labels: A better, tie at 0, other tie, B better",
    ),
    "score_gap": LabelScheme(
        name="score_gap",
        kind="regression",
        labels={},
        assign=_score_gap,
        description="the number score_A - score_B, fitted by a regressor",
    ),
}

_DECISION_RULES = {
    "p_a_needed": DecisionRule(
        name="p_a_needed",
        description="P(A better) + P(both scored 0): RoRF's probability that A is needed",
        weights={"a_better": 1.0, "tie_both_zero": 1.0},
    ),
    "p_a_minus_p_b": DecisionRule(
        name="p_a_minus_p_b",
        description="P(A better) - P(B better), rescaled from [-1, 1] to [0, 1]",
        weights={"a_better": 0.5, "b_better": -0.5},
        offset=0.5,
    ),
    "predicted_gain": DecisionRule(
        name="predicted_gain",
        description="predicted score_A - score_B, divided by its training range and mapped to [0, 1]",
        kind="regression",
        weights={},
        offset=0.5,
    ),
}


def gain_to_score(predicted_gain: np.ndarray, scale: float) -> np.ndarray:
    """Map a predicted gap in ``[-scale, scale]`` to a routing score in [0, 1]."""
    return 0.5 + 0.5 * np.clip(np.asarray(predicted_gain, np.float64) / scale, -1.0, 1.0)


def check_rule_fits_scheme(scheme: LabelScheme, rule: DecisionRule) -> None:
    """Raise unless ``rule`` reads the kind of output that ``scheme`` trains."""
    if scheme.kind != rule.kind:
        matching = sorted(name for name, r in _DECISION_RULES.items() if r.kind == scheme.kind)
        raise InvalidConfigError(
            f"decision rule {rule.name!r} reads {rule.kind} output but label scheme "
            f"{scheme.name!r} trains {scheme.kind}; use one of: {', '.join(matching)}"
        )


def label_schemes() -> dict[str, LabelScheme]:
    """Return the known label schemes by name."""
    return dict(_LABEL_SCHEMES)


def decision_rules() -> dict[str, DecisionRule]:
    """Return the known decision rules by name."""
    return dict(_DECISION_RULES)


def get_label_scheme(name: str) -> LabelScheme:
    """Return the label scheme called ``name``."""
    if name not in _LABEL_SCHEMES:
        known = ", ".join(sorted(_LABEL_SCHEMES))
        raise RouterFormatError(f"unknown label scheme {name!r}; known: {known}")
    return _LABEL_SCHEMES[name]


def get_decision_rule(name: str) -> DecisionRule:
    """Return the decision rule called ``name``."""
    if name not in _DECISION_RULES:
        known = ", ".join(sorted(_DECISION_RULES))
        raise RouterFormatError(f"unknown decision rule {name!r}; known: {known}")
    return _DECISION_RULES[name]
