"""Screen routing-recipe variants by cross-validation on training rows only.

For each split of ``rorf train --eval-fraction 0.2 --seed S``, every variant
is fitted on K-1 folds of the split's training rows and scores the remaining
fold. The split's held-out rows are dropped before any fit or score.
It prints each variant's mean CV APGR per split and over the splits. The
variants are the ideas of rounds 3 and 4 in ``docs/quality-research.md``.

Run from the repository root::

    python benchmarks/quality_screen.py [--seeds 0 1 2 3 4] [--folds 3]
        [--variants plain subject ...]

All variants use the default recipe's model inputs (first 32 wordllama
columns plus 12 text features) and its extra-trees regressor (300 trees,
``max_features=0.5``, ``min_samples_leaf=10``) unless the name says
otherwise. "n-grams" is the n-gram ridge model of ``rorf_core.lexical``,
fitted on the smoothed target unless the name says "on gap", and "+ 0.3"
blends its prediction into the forest's with weight 0.3. About 10 minutes
per split for all variants on 2 cores.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold

from rorf_core import get_embedder
from rorf_core.cache import EmbeddingCache
from rorf_core.data import load_battles
from rorf_core.evaluation import routing_curve, routing_metrics
from rorf_core.features import DEFAULT_TEXT_FEATURES, model_inputs
from rorf_core.group_target import GroupTarget, group_means, smooth_gap
from rorf_core.lexical import DEFAULT_ALPHA, DEFAULT_MIN_DF, fit_lexical, prompt_ngrams
from rorf_core.training import split_battles

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RORF_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
MMLU = DATA / "mmlu_gpt4_mixtral.parquet"
SUBJECT = GroupTarget(column="subject", weight=0.5, prior_rows=20.0)


class Fold:
    """The fitting rows of one CV fold, and the models fitted on them."""

    def __init__(self, inputs: np.ndarray, embedding: np.ndarray, gap: np.ndarray, groups: np.ndarray, ngrams: list, fit: np.ndarray, seed: int) -> None:
        self.fit_x, self.fit_emb, self.fit_gap, self.fit_groups = inputs[fit], embedding[fit], gap[fit], groups[fit]
        self.fit_ngrams = [ngrams[i] for i in fit]
        self.seed = seed
        self._memo: dict[object, np.ndarray] = {}

    def memo(self, key: object, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """Return ``compute()``, computed once per fold for each ``key``."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def smoothed_forest(self, x: np.ndarray) -> np.ndarray:
        return self.memo("smoothed forest", lambda: self.regressor(self.smoothed()).predict(x))

    def lexical(self, ngrams: list, alpha: float = DEFAULT_ALPHA, target: str = "smoothed", min_df: int = DEFAULT_MIN_DF) -> np.ndarray:
        """Return the n-gram ridge model's predictions of the smoothed (or plain) target."""

        def compute() -> np.ndarray:
            fitted = self.smoothed() if target == "smoothed" else self.fit_gap
            return fit_lexical(self.fit_ngrams, fitted, alpha=alpha, min_df=min_df).predict_ngrams(ngrams)

        return self.memo(("lexical", alpha, target, min_df), compute)

    def tfidf_neighbours(self, ngrams: list, count: int) -> np.ndarray:
        """Return the mean smoothed target of the ``count`` fitting rows nearest in TF-IDF cosine."""
        def similarity() -> np.ndarray:
            vectors = fit_lexical(self.fit_ngrams, self.smoothed())
            return (vectors.matrix(ngrams) @ vectors.matrix(self.fit_ngrams).T).toarray()

        nearest = np.argpartition(-self.memo("tfidf similarity", similarity), count, axis=1)[:, :count]
        return self.smoothed()[nearest].mean(axis=1)

    def regressor(self, target: np.ndarray, outputs: np.ndarray | None = None, **changes: object) -> ExtraTreesRegressor:
        params = {"n_estimators": 300, "max_features": 0.5, "min_samples_leaf": 10, "n_jobs": -1, "random_state": self.seed, **changes}
        y = target if outputs is None else np.column_stack([target, outputs])
        return ExtraTreesRegressor(**params).fit(self.fit_x, y)

    def smoothed(self, weight: float = SUBJECT.weight) -> np.ndarray:
        return smooth_gap(self.fit_gap, self.fit_groups, GroupTarget(column="subject", weight=weight, prior_rows=SUBJECT.prior_rows))

    def subject_lookup(self, embedding: np.ndarray) -> np.ndarray:
        """Expected subject mean gap under a subject classifier on all 256 columns."""
        means, _ = group_means(self.fit_gap, self.fit_groups, SUBJECT.prior_rows)
        classifier = LogisticRegression(max_iter=300).fit(self.fit_emb, self.fit_groups.astype(str))
        return classifier.predict_proba(embedding) @ np.array([means[c] for c in classifier.classes_])

    def three_class(self, inputs: np.ndarray) -> np.ndarray:
        forest = ExtraTreesClassifier(n_estimators=300, max_features=0.5, min_samples_leaf=10, n_jobs=-1, random_state=self.seed)
        forest.fit(self.fit_x, np.sign(self.fit_gap))
        proba, classes = forest.predict_proba(inputs), list(forest.classes_)
        return proba[:, classes.index(1.0)] - proba[:, classes.index(-1.0)]


def blend(forest: np.ndarray, lexical: np.ndarray, weight: float) -> np.ndarray:
    return (1.0 - weight) * forest + weight * lexical


# Each variant fits on the fold and returns scores for the scored rows,
# given their model inputs x, embeddings e and n-grams g.
Variant = Callable[[Fold, np.ndarray, np.ndarray, list], np.ndarray]
VARIANTS: dict[str, Variant] = {
    "plain": lambda f, x, e, g: f.regressor(f.fit_gap).predict(x),
    "subject": lambda f, x, e, g: f.smoothed_forest(x),
    "n-grams only": lambda f, x, e, g: f.lexical(g),
    "n-grams only, alpha 10": lambda f, x, e, g: f.lexical(g, 10.0),
    "subject + 0.2 n-grams": lambda f, x, e, g: blend(f.smoothed_forest(x), f.lexical(g), 0.2),
    "subject + 0.3 n-grams": lambda f, x, e, g: blend(f.smoothed_forest(x), f.lexical(g), 0.3),
    "subject + 0.4 n-grams": lambda f, x, e, g: blend(f.smoothed_forest(x), f.lexical(g), 0.4),
    "subject + 0.3 n-grams, alpha 10": lambda f, x, e, g: blend(f.smoothed_forest(x), f.lexical(g, 10.0), 0.3),
    "subject + 0.3 n-grams, min_df 3": lambda f, x, e, g: blend(f.smoothed_forest(x), f.lexical(g, min_df=3), 0.3),
    "subject + 0.3 n-grams on gap": lambda f, x, e, g: blend(f.smoothed_forest(x), f.lexical(g, target="gap"), 0.3),
    "plain + 0.3 n-grams on gap": lambda f, x, e, g: blend(f.regressor(f.fit_gap).predict(x), f.lexical(g, target="gap"), 0.3),
    "default + 0.2 kNN 50": lambda f, x, e, g: blend(blend(f.smoothed_forest(x), f.lexical(g), 0.3), f.tfidf_neighbours(g, 50), 0.2),
    "default + 0.2 kNN 200": lambda f, x, e, g: blend(blend(f.smoothed_forest(x), f.lexical(g), 0.3), f.tfidf_neighbours(g, 200), 0.2),
    "subject, leaf 5": lambda f, x, e, g: f.regressor(f.smoothed(), min_samples_leaf=5).predict(x),
    "subject, leaf 20": lambda f, x, e, g: f.regressor(f.smoothed(), min_samples_leaf=20).predict(x),
    "subject, w = 0.3": lambda f, x, e, g: f.regressor(f.smoothed(0.3)).predict(x),
    "subject, w = 0.7": lambda f, x, e, g: f.regressor(f.smoothed(0.7)).predict(x),
    "subject_lookup": lambda f, x, e, g: f.subject_lookup(e),
    "subject + 0.25 lookup": lambda f, x, e, g: 0.75 * f.regressor(f.smoothed()).predict(x) + 0.25 * f.subject_lookup(e),
    "plain + 0.5 lookup": lambda f, x, e, g: 0.5 * f.regressor(f.fit_gap).predict(x) + 0.5 * f.subject_lookup(e),
    "plain + 3-class": lambda f, x, e, g: 0.5 * f.regressor(f.fit_gap).predict(x) + 0.5 * f.three_class(x),
    "1000 trees": lambda f, x, e, g: f.regressor(f.fit_gap, n_estimators=1000).predict(x),
    "bootstrap 0.7": lambda f, x, e, g: f.regressor(f.fit_gap, bootstrap=True, max_samples=0.7).predict(x),
    "outputs gap, |gap|": lambda f, x, e, g: f.regressor(f.fit_gap, np.abs(f.fit_gap)).predict(x)[:, 0],
    "outputs subject, |gap|": lambda f, x, e, g: f.regressor(f.smoothed(), np.abs(f.fit_gap)).predict(x)[:, 0],
}


def screen_split(battles, embeddings: np.ndarray, seed: int, folds: int, names: list[str]) -> dict[str, float]:
    train, _ = split_battles(battles, 0.2, seed)  # the held-out part is dropped here
    embedding = embeddings[train.rows]
    inputs = model_inputs(embedding, train.prompts, embedding_columns=32, text_features=DEFAULT_TEXT_FEATURES)
    gap = train.scores_a - train.scores_b
    ngrams = [prompt_ngrams(prompt) for prompt in train.prompts]
    apgr: dict[str, list[float]] = {name: [] for name in names}
    for fit, scored in KFold(folds, shuffle=True, random_state=seed).split(inputs):
        fold = Fold(inputs, embedding, gap, train.groups, ngrams, fit, seed)
        scored_ngrams = [ngrams[i] for i in scored]
        a, b = train.scores_a[scored], train.scores_b[scored]
        for name in names:
            scores = VARIANTS[name](fold, inputs[scored], embedding[scored], scored_ngrams)
            apgr[name].append(routing_metrics(routing_curve(scores, a, b), a, b).apgr)
    return {name: float(np.mean(values)) for name, values in apgr.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    battles = load_battles(str(MMLU), "gpt-4-1106-preview", "mixtral-8x7b-instruct-v0.1", group_column="subject", require_group_column=True)
    embeddings = EmbeddingCache().embed(get_embedder("wordllama"), battles.prompts, progress=True)
    table = {}
    for seed in args.seeds:
        table[seed] = screen_split(battles, embeddings, seed, args.folds, args.variants)
        print(f"  split {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in table[seed].items()), flush=True)
    print(f"\n{args.folds}-fold CV APGR on training rows; splits {args.seeds}")
    print(f"{'variant':<26} {'mean':>7} {'vs plain':>9}  per split")
    for name in args.variants:
        values = np.array([table[seed][name] for seed in args.seeds])
        plain = np.array([table[seed].get("plain", np.nan) for seed in args.seeds])
        print(f"{name:<26} {values.mean():>7.4f} {np.mean(values - plain):>+9.4f}  " + " ".join(f"{v:.4f}" for v in values))


if __name__ == "__main__":
    main()
