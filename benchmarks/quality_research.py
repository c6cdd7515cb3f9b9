"""Compare routing recipes on the MMLU GPT-4 / Mixtral data, ablation style.

Every recipe reads only the prompt text: wordllama embeddings plus cheap text
features. Each row of the table is the mean and standard deviation over five
random 80/20 splits (seeds 0 to 4) of APGR, CPT(50%) and CPT(80%) on the
evaluation rows. The two "winner" recipes pick their settings by 3-fold
cross-validation on the training rows of each split, so no evaluation row
chooses anything. "winner 2" trains on a target that mixes each row's delta
with its subject's mean delta. Only training reads the subject column, so the
fitted forest routes from the prompt text alone.

Run:
    python benchmarks/quality_research.py
    python benchmarks/quality_research.py --rows winner_average et_subject_target

It needs `wordllama`, `scikit-learn`, `pandas` and `pyarrow`. The first run
embeds the 11,805 prompts (about 20 s) and caches the result.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import re
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.model_selection import KFold, train_test_split
from sklearn.neighbors import NearestNeighbors

logger = logging.getLogger(__name__)

DATA_PATH = pathlib.Path("/work/shared/data/mmlu_gpt4_mixtral.parquet")
MODEL_A = "gpt-4-1106-preview"
MODEL_B = "mixtral-8x7b-instruct-v0.1"
SEEDS = (0, 1, 2, 3, 4)
N_JOBS = 2

# Grid searched by inner cross-validation for the winning recipe.
LEAF_GRID = (10, 20, 40)
DIMS_GRID = (16, 32)

# Grid searched by inner cross-validation for the averaged recipe.
AVERAGE_LEAF_GRID = (10, 20)
# Weight of the per-subject mean delta in the regressor's training target.
SUBJECT_WEIGHT_GRID = (0.0, 0.5)
# Shrinks each subject's mean delta towards the overall mean, as if every
# subject had this many extra rows at the overall mean.
SUBJECT_PRIOR_ROWS = 20

_OPTION_SPLIT = re.compile(r"\n([A-D])\. ")
_MATH_CHARS = frozenset("=+*/^<>()$\\")


# --- metrics -----------------------------------------------------------------


def pgr_curve(score: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return PGR at each share k/n of calls sent to A, for k = 0..n.

    Prompts go to A in descending score order. Rows with equal scores are
    routed fractionally (their score differences are averaged), so the curve
    does not depend on row order.
    """
    order = np.argsort(-score, kind="stable")
    sorted_score = score[order]
    delta = (a - b)[order]
    _, starts, counts = np.unique(-sorted_score, return_index=True, return_counts=True)
    group_sums = np.add.reduceat(delta, starts)
    delta = np.repeat(group_sums / counts, counts)
    gained = np.concatenate([[0.0], np.cumsum(delta)])
    average_score = (b.sum() + gained) / len(score)
    return (average_score - b.mean()) / (a.mean() - b.mean())


def route_metrics(score: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return [APGR, CPT(50%), CPT(80%)] for one score vector."""
    pgr = pgr_curve(score, a, b)
    n = len(pgr) - 1
    # Trapezoid rule over share in [0, 1] with step 1/n.
    apgr = (pgr.sum() - (pgr[0] + pgr[-1]) / 2) / n
    share = np.arange(n + 1) / n

    def cpt(target: float) -> float:
        reached = np.nonzero(pgr >= target - 1e-12)[0]
        return float(share[reached[0]]) if len(reached) else float("nan")

    return np.array([apgr, cpt(0.5), cpt(0.8)])


# --- data and features -------------------------------------------------------


def rorf_labels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Label as RoRF does: 0 A better, 1 tie at 0, 2 tie otherwise, 3 B better."""
    tie_label = np.where(a == 0, 1, 2)
    return np.where(a > b, 0, np.where(a < b, 3, tie_label))


def text_features(text: str) -> list[float]:
    """Compute 12 cheap features of one prompt, in microseconds per prompt.

    The features are: log(1 + characters), log(1 + characters of the stem,
    the text before the first "\\nA. "), share of digits, share of the
    characters = + * / ^ < > ( ) $ \\, share of upper-case letters, number of
    newlines, mean option length in characters, number of options,
    "Statement 1" present, "which of the following" present (case-insensitive),
    any digit in the options, and number of whitespace-separated words.
    """
    n = len(text)
    stem = text.split("\nA. ")[0]
    parts = _OPTION_SPLIT.split(text)
    options = parts[2::2]
    option_lengths = [len(option) for option in options]
    return [
        float(np.log1p(n)),
        float(np.log1p(len(stem))),
        sum(c.isdigit() for c in text) / n,
        sum(c in _MATH_CHARS for c in text) / n,
        sum(c.isupper() for c in text) / n,
        float(text.count("\n")),
        float(np.mean(option_lengths)) if option_lengths else 0.0,
        float(len(option_lengths)),
        float("Statement 1" in text),
        float("which of the following" in text.lower()),
        float(any(c.isdigit() for c in "".join(options))),
        float(len(text.split())),
    ]


def load_wordllama():  # noqa: ANN201 - wordllama ships no type stubs
    """Load the bundled 256-dimension wordllama model without downloads."""
    import wordllama
    from wordllama import WordLlama

    try:
        return WordLlama.load(disable_download=True)
    except FileNotFoundError:
        # NOTE: wordllama 0.4.0.post1 looks for its bundled tokenizer under
        # "tokenizer/" but ships it under "tokenizers/". Pointing cache_dir at
        # the package finds both bundled files.
        package_dir = pathlib.Path(wordllama.__file__).parent
        return WordLlama.load(cache_dir=package_dir, disable_download=True)


def load_embeddings(texts: Sequence[str], cache: pathlib.Path) -> np.ndarray:
    """Embed texts with wordllama (not normalised), caching them in `cache`."""
    if cache.exists():
        embeddings = np.load(cache)
        if embeddings.shape[0] == len(texts):
            return embeddings
        logger.warning("Ignoring cache %s: %d rows, expected %d", cache,
                       embeddings.shape[0], len(texts))
    started = time.perf_counter()
    embeddings = load_wordllama().embed(list(texts)).astype(np.float32)
    logger.info("Embedded %d prompts in %.1f s", len(texts),
                time.perf_counter() - started)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, embeddings)
    return embeddings


# --- recipes -----------------------------------------------------------------


class Recipes:
    """All routing recipes, sharing the data of one benchmark run.

    Each recipe method maps (train indices, eval indices, seed) to one score
    per eval row. A higher score means "send this prompt to model A".
    """

    def __init__(self, frame: pd.DataFrame, embeddings: np.ndarray) -> None:
        self.a = frame[f"{MODEL_A}/score"].to_numpy(float)
        self.b = frame[f"{MODEL_B}/score"].to_numpy(float)
        self.delta = self.a - self.b
        self.subject = frame["subject"].to_numpy()
        self.embeddings = embeddings
        self.text = np.array([text_features(t) for t in frame["Input"]])
        self._rorf_cache: dict[tuple[int, int], np.ndarray] = {}

    def truncated(self, dims: int) -> np.ndarray:
        """Return the first `dims` embedding dimensions with the text features.

        wordllama models are trained for Matryoshka truncation, so the leading
        dimensions are meant to carry the most information. At route time the
        router slices the same columns from the 256-dimension embedding;
        `WordLlama.load(trunc_dim=...)` in 0.4.0.post1 accepts only 64 and up.
        """
        return np.hstack([self.embeddings[:, :dims], self.text])

    # Reference rows.

    def random(self, train: np.ndarray, test: np.ndarray, seed: int) -> np.ndarray:
        # A constant score is one tie group: the tie rule makes this the
        # expected value of random routing (APGR 0.5 exactly).
        return np.zeros(len(test))

    def oracle(self, train: np.ndarray, test: np.ndarray, seed: int) -> np.ndarray:
        return self.delta[test]

    def subject_lookup(
        self, train: np.ndarray, test: np.ndarray, seed: int
    ) -> np.ndarray:
        # Uses the subject column, which routing cannot see: a reference only.
        means = pd.Series(self.delta[train]).groupby(self.subject[train]).mean()
        return pd.Series(self.subject[test]).map(means).fillna(0.0).to_numpy()

    def knn(self, train: np.ndarray, test: np.ndarray, seed: int) -> np.ndarray:
        # Not a forest: shows what smoothing over embedding neighbours gives.
        index = NearestNeighbors(n_neighbors=100, metric="cosine")
        index.fit(self.embeddings[train])
        _, neighbours = index.kneighbors(self.embeddings[test])
        return self.delta[train][neighbours].mean(axis=1)

    # RoRF's forest, with both decision rules from one fit.

    def _rorf_proba(self, train: np.ndarray, test: np.ndarray, seed: int):
        key = (seed, len(test))
        if key not in self._rorf_cache:
            forest = RandomForestClassifier(
                n_estimators=100, max_depth=20, max_features=1.0,
                n_jobs=N_JOBS, random_state=seed,
            )
            forest.fit(self.embeddings[train],
                       rorf_labels(self.a[train], self.b[train]))
            proba = np.zeros((len(test), 4))
            proba[:, forest.classes_] = forest.predict_proba(self.embeddings[test])
            self._rorf_cache[key] = proba
        return self._rorf_cache[key]

    def rorf(self, train: np.ndarray, test: np.ndarray, seed: int) -> np.ndarray:
        proba = self._rorf_proba(train, test, seed)
        return proba[:, 0] + proba[:, 1]

    def rorf_p0_minus_p3(
        self, train: np.ndarray, test: np.ndarray, seed: int
    ) -> np.ndarray:
        # P(A better) - P(B better) is E[score_A - score_B | prompt].
        proba = self._rorf_proba(train, test, seed)
        return proba[:, 0] - proba[:, 3]

    # Forest variants, one change at a time.

    def rf_regressor(self, train, test, seed):
        forest = RandomForestRegressor(
            n_estimators=300, max_features="sqrt", min_samples_leaf=20,
            n_jobs=N_JOBS, random_state=seed,
        )
        forest.fit(self.embeddings[train], self.delta[train])
        return forest.predict(self.embeddings[test])

    def et_binary(self, train, test, seed):
        forest = ExtraTreesClassifier(
            n_estimators=300, max_features="sqrt", min_samples_leaf=20,
            n_jobs=N_JOBS, random_state=seed,
        )
        forest.fit(self.embeddings[train], self.a[train] > self.b[train])
        return forest.predict_proba(self.embeddings[test])[:, 1]

    def et_regressor(self, train, test, seed):
        return self._fit_et(self.embeddings, train, test, seed, leaf=20,
                            max_features="sqrt")

    def et_text_only(self, train, test, seed):
        return self._fit_et(self.text, train, test, seed, leaf=20,
                            max_features=1.0)

    def et_full_plus_text(self, train, test, seed):
        features = np.hstack([self.embeddings, self.text])
        return self._fit_et(features, train, test, seed, leaf=20,
                            max_features="sqrt")

    def et_truncated_fixed(self, train, test, seed):
        return self._fit_et(self.truncated(32), train, test, seed, leaf=20,
                            max_features=0.5)

    def winner(self, train: np.ndarray, test: np.ndarray, seed: int) -> np.ndarray:
        leaf, dims = self.select_by_cv(train, seed)
        logger.info("seed %d: chose min_samples_leaf=%d, dims=%d", seed, leaf, dims)
        return self._fit_et(self.truncated(dims), train, test, seed, leaf=leaf,
                            max_features=0.5)

    def select_by_cv(self, train: np.ndarray, seed: int) -> tuple[int, int]:
        """Pick (min_samples_leaf, dims) by 3-fold CV APGR on training rows."""
        folds = list(KFold(3, shuffle=True, random_state=seed).split(train))
        best, best_apgr = (LEAF_GRID[0], DIMS_GRID[0]), -np.inf
        for dims in DIMS_GRID:
            features = self.truncated(dims)
            for leaf in LEAF_GRID:
                apgrs = []
                for fit_part, check_part in folds:
                    fit_rows, check_rows = train[fit_part], train[check_part]
                    score = self._fit_et(features, fit_rows, check_rows, seed,
                                         leaf=leaf, max_features=0.5)
                    apgrs.append(route_metrics(score, self.a[check_rows],
                                               self.b[check_rows])[0])
                logger.debug("seed %d leaf %d dims %d: CV APGR %.4f",
                             seed, leaf, dims, np.mean(apgrs))
                if np.mean(apgrs) > best_apgr:
                    best, best_apgr = (leaf, dims), float(np.mean(apgrs))
        return best

    def _fit_et(self, features, train, test, seed, *, leaf, max_features,
                target=None):
        forest = ExtraTreesRegressor(
            n_estimators=300, max_features=max_features, min_samples_leaf=leaf,
            n_jobs=N_JOBS, random_state=seed,
        )
        target = self.delta if target is None else target
        forest.fit(features[train], target[train])
        return forest.predict(features[test])

    # Round 2: a 3-class classifier, a subject-smoothed training target and
    # an average of two forests.

    def subject_target(self, train: np.ndarray, weight: float) -> np.ndarray:
        """Return weight * subject mean delta + (1 - weight) * delta, all rows.

        The subject means come from the `train` rows only and are shrunk
        towards their overall mean. Only the training target reads the
        subject column, so a router that serves the fitted forest needs the
        prompt text alone. Rows outside `train` get values too, but the
        callers fit on `train` rows only.
        """
        groups = pd.Series(self.delta[train]).groupby(self.subject[train])
        prior = float(self.delta[train].mean())
        means = (groups.sum() + SUBJECT_PRIOR_ROWS * prior) / (
            groups.count() + SUBJECT_PRIOR_ROWS
        )
        subject_mean = pd.Series(self.subject).map(means).fillna(prior).to_numpy()
        return weight * subject_mean + (1 - weight) * self.delta

    def _fit_et_sign(self, features, train, test, seed, *, leaf):
        # Classes -1 (B better), 0 (tie), 1 (A better). P(1) - P(-1) estimates
        # E[score_A - score_B] because the scores are 0 or 1.
        forest = ExtraTreesClassifier(
            n_estimators=300, max_features=0.5, min_samples_leaf=leaf,
            n_jobs=N_JOBS, random_state=seed,
        )
        forest.fit(features[train], np.sign(self.delta[train]).astype(int))
        proba = forest.predict_proba(features[test])
        classes = list(forest.classes_)
        return proba[:, classes.index(1)] - proba[:, classes.index(-1)]

    def et_sign_classifier(self, train, test, seed):
        return self._fit_et_sign(self.truncated(32), train, test, seed, leaf=10)

    def et_subject_target(self, train, test, seed):
        target = self.subject_target(train, 0.5)
        return self._fit_et(self.truncated(32), train, test, seed, leaf=10,
                            max_features=0.5, target=target)

    def et_average(self, train, test, seed):
        features = self.truncated(32)
        regression = self._fit_et(features, train, test, seed, leaf=10,
                                  max_features=0.5)
        classes = self._fit_et_sign(features, train, test, seed, leaf=10)
        return (regression + classes) / 2

    def et_average_subject(self, train, test, seed):
        features = self.truncated(32)
        regression = self.et_subject_target(train, test, seed)
        classes = self._fit_et_sign(features, train, test, seed, leaf=10)
        return (regression + classes) / 2

    def winner_average(self, train, test, seed):
        """Average a regressor and a 3-class classifier, settings by inner CV.

        Inner 3-fold CV on the training rows picks the regressor's
        `min_samples_leaf` and subject weight, and whether to average it
        with the classifier (leaf 10) or use it alone.
        """
        leaf, weight, average = self.select_average_by_cv(train, seed)
        logger.info("seed %d: chose min_samples_leaf=%d, subject weight=%.1f, "
                    "average=%s", seed, leaf, weight, average)
        features = self.truncated(32)
        score = self._fit_et(features, train, test, seed, leaf=leaf,
                             max_features=0.5,
                             target=self.subject_target(train, weight))
        if average:
            score = (score + self._fit_et_sign(features, train, test, seed,
                                               leaf=10)) / 2
        return score

    def select_average_by_cv(self, train, seed) -> tuple[int, float, bool]:
        """Pick (leaf, subject weight, average) by 3-fold CV APGR."""
        features = self.truncated(32)
        folds = list(KFold(3, shuffle=True, random_state=seed).split(train))
        classifier_scores = [
            self._fit_et_sign(features, train[f], train[c], seed, leaf=10)
            for f, c in folds
        ]
        best, best_apgr = (AVERAGE_LEAF_GRID[0], 0.0, False), -np.inf
        for leaf in AVERAGE_LEAF_GRID:
            for weight in SUBJECT_WEIGHT_GRID:
                apgrs = {False: [], True: []}
                for (f, c), classifier in zip(folds, classifier_scores):
                    fit_rows, check_rows = train[f], train[c]
                    # The subject means come from the fitting part only.
                    target = self.subject_target(fit_rows, weight)
                    score = self._fit_et(features, fit_rows, check_rows, seed,
                                         leaf=leaf, max_features=0.5,
                                         target=target)
                    a, b = self.a[check_rows], self.b[check_rows]
                    apgrs[False].append(route_metrics(score, a, b)[0])
                    apgrs[True].append(
                        route_metrics((score + classifier) / 2, a, b)[0])
                for average, values in apgrs.items():
                    logger.debug("seed %d leaf %d weight %.1f average %s: "
                                 "CV APGR %.4f", seed, leaf, weight, average,
                                 np.mean(values))
                    if np.mean(values) > best_apgr:
                        best = (leaf, weight, average)
                        best_apgr = float(np.mean(values))
        return best


ROWS: tuple[tuple[str, str], ...] = (
    ("random", "random"),
    ("oracle", "oracle"),
    ("per-subject lookup (uses subject; reference)", "subject_lookup"),
    ("kNN k=100 cosine, mean delta (not a forest)", "knn"),
    ("RoRF: RFC 4-class, p0+p1", "rorf"),
    ("RoRF forest, rule p0-p3", "rorf_p0_minus_p3"),
    ("RF regressor on delta, sqrt, leaf 20", "rf_regressor"),
    ("ET classifier, label A>B, sqrt, leaf 20", "et_binary"),
    ("ET regressor on delta, sqrt, leaf 20", "et_regressor"),
    ("ET regressor, 12 text features only", "et_text_only"),
    ("ET regressor, 256 dims + text, sqrt", "et_full_plus_text"),
    ("ET regressor, 32 dims + text, mf 0.5, leaf 20", "et_truncated_fixed"),
    ("winner: ET, dims+text, leaf/dims by inner CV", "winner"),
    ("ET classifier, 3 classes sign(delta), P(1)-P(-1), leaf 10",
     "et_sign_classifier"),
    ("ET regressor, target 0.5 delta + 0.5 subject mean, leaf 10",
     "et_subject_target"),
    ("average: ET regressor on delta + ET 3-class", "et_average"),
    ("average: ET regressor on subject target + ET 3-class", "et_average_subject"),
    ("winner 2: average, leaf/weight/average by inner CV", "winner_average"),
)


def run(recipes: Recipes, row_names: Sequence[str]) -> pd.DataFrame:
    """Evaluate each recipe on every split and return the summary table."""
    n = len(recipes.a)
    results = []
    for label, method in ROWS:
        if row_names and method not in row_names:
            continue
        started = time.perf_counter()
        per_seed = []
        for seed in SEEDS:
            train, test = train_test_split(np.arange(n), test_size=0.2,
                                           random_state=seed)
            score = getattr(recipes, method)(train, test, seed)
            per_seed.append(route_metrics(score, recipes.a[test], recipes.b[test]))
        per_seed = np.array(per_seed)
        mean, std = per_seed.mean(axis=0), per_seed.std(axis=0)
        logger.info("%s: APGR %.3f in %.0f s", method, mean[0],
                    time.perf_counter() - started)
        results.append({
            "recipe": label,
            "APGR": f"{mean[0]:.3f} ± {std[0]:.3f}",
            "CPT(50%)": f"{mean[1]:.3f} ± {std[1]:.3f}",
            "CPT(80%)": f"{mean[2]:.3f} ± {std[2]:.3f}",
            "APGR per seed": " ".join(f"{v:.3f}" for v in per_seed[:, 0]),
        })
    return pd.DataFrame(results)


def format_markdown(table: pd.DataFrame) -> str:
    """Format the table as Markdown without needing the tabulate package."""
    lines = ["| " + " | ".join(table.columns) + " |",
             "|" + " --- |" * len(table.columns)]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(str(value) for value in row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=pathlib.Path, default=DATA_PATH,
                        help="parquet file with Input, subject and score columns")
    parser.add_argument("--cache", type=pathlib.Path,
                        default=pathlib.Path("/tmp/quality/emb.npy"),
                        help="where to cache the wordllama embeddings (.npy)")
    parser.add_argument("--rows", nargs="*", default=[],
                        help="recipe method names to run (default: all)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    frame = pd.read_parquet(args.data)
    embeddings = load_embeddings(frame["Input"].tolist(), args.cache)
    table = run(Recipes(frame, embeddings), args.rows)
    print(format_markdown(table))


if __name__ == "__main__":
    main()
