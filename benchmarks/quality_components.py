"""Screen extra model components against the default recipe by out-of-fold scores.

For each split of ``rorf train --eval-fraction 0.2 --seed S``, the split's
held-out rows are dropped first. Each component is then fitted on K-1 folds
of the training rows and predicts the remaining fold, so every training row
gets one out-of-fold prediction per component. Blends of components cost
nothing after that, so the script scores many blends from one set of fits.
It prints the mean K-fold CV APGR per split, the same measure as
``quality_screen.py``. The results are round 5 of ``docs/quality-research.md``.

Run from the repository root::

    python benchmarks/quality_components.py [--seeds 0 1 2 3 4] [--folds 3]
        [--cache-dir DIR] [--other-embedding VECTORS.npy]

Predictions are kept in ``--cache-dir`` (one ``.npz`` per split), so a
second run only prints. About 3 minutes per split on 2 cores, most of it
the two subject classifiers.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.optimize import nnls
from sklearn.ensemble import ExtraTreesRegressor, HistGradientBoostingRegressor
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold
from sklearn.svm import LinearSVC

from rorf_core import get_embedder
from rorf_core.cache import EmbeddingCache
from rorf_core.data import Battles, load_battles
from rorf_core.evaluation import routing_curve, routing_metrics
from rorf_core.features import DEFAULT_TEXT_FEATURES, model_inputs
from rorf_core.group_target import GroupTarget, group_means, smooth_gap
from rorf_core.lexical import fit_lexical, prompt_ngrams
from rorf_core.recipes import get_recipe
from rorf_core.training import split_battles

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RORF_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
MMLU = DATA / "mmlu_gpt4_mixtral.parquet"
# The screen compares against the default recipe, so its settings come from there.
RECIPE = get_recipe("default")
SUBJECT = GroupTarget(
    column="subject", weight=RECIPE.group_weight, prior_rows=RECIPE.group_prior_rows
)
LEXICAL_WEIGHT = RECIPE.lexical_weight
DEFAULT_CACHE = Path.home() / ".cache" / "rorf" / "quality_components"


class Fold:
    """One CV fold: the fitting rows with their target, and the scored rows."""

    def __init__(
        self, split: dict, fit: np.ndarray, scored: np.ndarray, seed: int
    ) -> None:
        self.seed = seed
        self.fit_x, self.x = split["x"][fit], split["x"][scored]
        self.fit_embedding, self.embedding = (
            split["embedding"][fit],
            split["embedding"][scored],
        )
        self.fit_groups, self.groups = split["groups"][fit], split["groups"][scored]
        self.fit_gap = split["gap"][fit]
        self.target = smooth_gap(self.fit_gap, self.fit_groups, SUBJECT)
        self.fit_ngrams = [split["ngrams"][i] for i in fit]
        self.ngrams = [split["ngrams"][i] for i in scored]
        self.fit_prompts = [split["prompts"][i] for i in fit]
        self.prompts = [split["prompts"][i] for i in scored]
        if "other" in split:
            self.fit_other, self.other = split["other"][fit], split["other"][scored]


def default_forest(seed: int) -> ExtraTreesRegressor:
    """Return an unfitted regressor with the default recipe's settings."""
    return ExtraTreesRegressor(**RECIPE.scorer_params, n_jobs=-1, random_state=seed)


def default_score(forest: np.ndarray, lexical: np.ndarray) -> np.ndarray:
    """Blend forest and n-gram predictions as the default recipe does."""
    return (1.0 - LEXICAL_WEIGHT) * forest + LEXICAL_WEIGHT * lexical


def tfidf(prompts: list[str]) -> TfidfVectorizer:
    """Return a TF-IDF vectorizer over words and word pairs, fitted on ``prompts``."""
    settings = {
        "token_pattern": r"\b\w\w+\b",
        "ngram_range": (1, 2),
        "min_df": 2,
        "sublinear_tf": True,
        "dtype": np.float32,
    }
    return TfidfVectorizer(**settings).fit(prompts)


def subject_table(
    groups: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return the sorted subject names and the mean of ``values`` over each subject's rows."""
    names = np.unique(groups)
    return names, np.array([values[groups == name].mean() for name in names])


def default_oof(fold: Fold, folds: int = 3) -> np.ndarray:
    """Return default-recipe predictions for the fitting rows, each from a model that did not fit it."""
    predictions = np.zeros(len(fold.fit_x))
    for part, rest in KFold(folds, shuffle=True, random_state=fold.seed + 1).split(
        fold.fit_x
    ):
        trees = default_forest(fold.seed).fit(fold.fit_x[part], fold.target[part])
        lexical = fit_lexical([fold.fit_ngrams[i] for i in part], fold.target[part])
        predictions[rest] = default_score(
            trees.predict(fold.fit_x[rest]),
            lexical.predict_ngrams([fold.fit_ngrams[i] for i in rest]),
        )
    return predictions


def subject_shrink(fold: Fold) -> dict[str, np.ndarray]:
    """Return the subject-level part of the default recipe's score for each scored row.

    A linear SVM on TF-IDF predicts the subject, and the score is that subject's
    mean default prediction over fitting rows, each predicted out of fold.
    The "true subject" entry reads the scored rows' real subjects, which a
    router never has, so it bounds what a better classifier could reach.
    """
    names, means = subject_table(fold.fit_groups, default_oof(fold))
    vectors = tfidf(fold.fit_prompts)
    classifier = LinearSVC(C=0.5).fit(
        vectors.transform(fold.fit_prompts), fold.fit_groups
    )
    predicted = classifier.predict(vectors.transform(fold.prompts))
    lookup = dict(zip(names, means))
    return {
        "subject shrink (SVM subject)": np.array([lookup[name] for name in predicted]),
        "subject shrink (true subject)": np.array(
            [lookup[name] for name in fold.groups]
        ),
        "SVM subject correct": (predicted == fold.groups).astype(float),
    }


def tfidf_subject(fold: Fold) -> np.ndarray:
    """Return the subject mean gap expected under a logistic subject classifier on TF-IDF."""
    vectors = tfidf(fold.fit_prompts)
    classifier = LogisticRegression(C=10.0, max_iter=300).fit(
        vectors.transform(fold.fit_prompts), fold.fit_groups
    )
    means, _ = group_means(fold.fit_gap, fold.fit_groups, SUBJECT.prior_rows)
    return classifier.predict_proba(vectors.transform(fold.prompts)) @ np.array(
        [means[name] for name in classifier.classes_]
    )


def char_ngrams(fold: Fold) -> np.ndarray:
    """Return a ridge model's predictions from TF-IDF character 2- to 5-grams within words."""
    vectors = TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=(2, 5),
        min_df=2,
        sublinear_tf=True,
        dtype=np.float32,
    )
    vectors.fit(fold.fit_prompts)
    return (
        Ridge(alpha=3.0)
        .fit(vectors.transform(fold.fit_prompts), fold.target)
        .predict(vectors.transform(fold.prompts))
    )


def nearest_rows(fold: Fold, count: int = 50) -> np.ndarray:
    """Return the mean target of the ``count`` fitting rows nearest by embedding cosine."""
    fitted = fold.fit_embedding / np.linalg.norm(
        fold.fit_embedding, axis=1, keepdims=True
    )
    scored = fold.embedding / np.linalg.norm(fold.embedding, axis=1, keepdims=True)
    nearest = np.argpartition(-(scored @ fitted.T), count, axis=1)[:, :count]
    return fold.target[nearest].mean(axis=1)


def forest_64_columns(fold: Fold) -> np.ndarray:
    """Return the default forest's predictions with 64 embedding columns instead of 32."""
    width = len(DEFAULT_TEXT_FEATURES)
    fit_x = np.column_stack([fold.fit_embedding[:, :64], fold.fit_x[:, -width:]])
    x = np.column_stack([fold.embedding[:, :64], fold.x[:, -width:]])
    return default_forest(fold.seed).fit(fit_x, fold.target).predict(x)


def stacked_ngrams(fold: Fold, inner: int = 5) -> np.ndarray:
    """Return a forest's predictions with the n-gram model's output as one more input column.

    The column is out of fold on the fitting rows, so the forest does not
    learn to trust an n-gram model that has seen the row's own target.
    """
    column = np.zeros(len(fold.fit_x))
    for part, rest in KFold(inner, shuffle=True, random_state=fold.seed).split(
        fold.fit_x
    ):
        model = fit_lexical([fold.fit_ngrams[i] for i in part], fold.target[part])
        column[rest] = model.predict_ngrams([fold.fit_ngrams[i] for i in rest])
    scored_column = fit_lexical(fold.fit_ngrams, fold.target).predict_ngrams(
        fold.ngrams
    )
    trees = default_forest(fold.seed).fit(
        np.column_stack([fold.fit_x, column]), fold.target
    )
    return trees.predict(np.column_stack([fold.x, scored_column]))


def other_embedding_forest(fold: Fold) -> np.ndarray:
    """Return the default forest's predictions over another embedder's vectors.

    All columns are kept, with the 12 text features beside them, and a split
    tries a fifth of the columns, which suits a few hundred columns.
    """
    width = len(DEFAULT_TEXT_FEATURES)
    fit_x = np.column_stack([fold.fit_other, fold.fit_x[:, -width:]])
    x = np.column_stack([fold.other, fold.x[:, -width:]])
    trees = default_forest(fold.seed).set_params(max_features=0.2)
    return trees.fit(fit_x, fold.target).predict(x)


# Each component maps a fold to predictions for its scored rows, or to
# several named predictions.
COMPONENTS: dict[str, Callable[[Fold], np.ndarray | dict[str, np.ndarray]]] = {
    "forest": lambda fold: (
        default_forest(fold.seed).fit(fold.fit_x, fold.target).predict(fold.x)
    ),
    "n-grams": lambda fold: fit_lexical(fold.fit_ngrams, fold.target).predict_ngrams(
        fold.ngrams
    ),
    "gradient boosting": lambda fold: (
        HistGradientBoostingRegressor(
            learning_rate=0.03,
            max_iter=300,
            max_leaf_nodes=15,
            min_samples_leaf=40,
            l2_regularization=1.0,
            random_state=fold.seed,
        )
        .fit(fold.fit_x, fold.target)
        .predict(fold.x)
    ),
    "TF-IDF subject classifier": tfidf_subject,
    "character n-grams": char_ngrams,
    "ridge on 256 columns": lambda fold: (
        Ridge(alpha=1.0).fit(fold.fit_embedding, fold.target).predict(fold.embedding)
    ),
    "50 nearest rows": nearest_rows,
    "forest, 64 columns": forest_64_columns,
    "forest with n-gram column": stacked_ngrams,
    "subject shrink": subject_shrink,
}


def prepare_split(
    battles: Battles, embeddings: np.ndarray, seed: int, other: np.ndarray | None
) -> dict:
    """Return the model inputs of one split's training rows. The held-out rows are dropped here."""
    train, _ = split_battles(battles, 0.2, seed)
    embedding = embeddings[train.rows]
    return {
        "x": model_inputs(
            embedding,
            train.prompts,
            embedding_columns=RECIPE.embedding_columns,
            text_features=DEFAULT_TEXT_FEATURES,
        ),
        "embedding": embedding,
        "groups": train.groups.astype(str),
        "gap": train.scores_a - train.scores_b,
        "a": train.scores_a,
        "b": train.scores_b,
        "ngrams": [prompt_ngrams(prompt) for prompt in train.prompts],
        "prompts": list(train.prompts),
        **({} if other is None else {"other": other[train.rows]}),
    }


def out_of_fold(
    split: dict,
    seed: int,
    folds: int,
    path: Path,
    components: dict,
    fingerprints: dict[str, str],
) -> dict[str, np.ndarray]:
    """Return every component's out-of-fold predictions, computing those missing from ``path``.

    A component listed in ``fingerprints`` is computed again when the cache
    contains another fingerprint for it, for example after its input file changed.
    """
    saved = dict(np.load(path)) if path.exists() else {}
    fold_of = np.zeros(len(split["gap"]), dtype=int)
    splits = list(KFold(folds, shuffle=True, random_state=seed).split(split["x"]))
    for number, (_, scored) in enumerate(splits):
        fold_of[scored] = number
    if "fold" in saved and not np.array_equal(saved["fold"], fold_of):
        saved = {}  # a cache from another --folds value
    saved.update(fold=fold_of, a=split["a"], b=split["b"])
    for name, component in components.items():
        fingerprint = fingerprints.get(name, "")
        cached = str(saved.get(f"fingerprint {name}", ""))
        if name in saved.get("done", ()) and cached == fingerprint:
            continue
        predictions: dict[str, np.ndarray] = {}
        for fit, scored in splits:
            result = component(Fold(split, fit, scored, seed))
            for key, values in (
                result if isinstance(result, dict) else {name: result}
            ).items():
                predictions.setdefault(key, np.zeros(len(fold_of)))[scored] = values
        saved.update(predictions)
        saved["done"] = np.array(sorted({*saved.get("done", ()), name}))
        saved[f"fingerprint {name}"] = np.array(fingerprint)
        np.savez(path, **saved)
        print(f"  split {seed}: {name} done", flush=True)
    return saved


def cv_apgr(oof: dict[str, np.ndarray], scores: np.ndarray) -> float:
    """Return the mean over folds of the APGR of ``scores`` on each fold's rows."""
    values = []
    for number in np.unique(oof["fold"]):
        rows = oof["fold"] == number
        a, b = oof["a"][rows], oof["b"][rows]
        values.append(routing_metrics(routing_curve(scores[rows], a, b), a, b).apgr)
    return float(np.mean(values))


def nnls_stack(oof: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    """Return a non-negative linear stack of ``names``, its weights fitted on the other folds.

    The other folds' predictions come from models that fitted the scored
    fold, so this stack is optimistic.
    """
    columns = np.column_stack(
        [oof[name] for name in names] + [np.ones(len(oof["fold"]))]
    )
    gap, stacked = oof["a"] - oof["b"], np.zeros(len(oof["fold"]))
    for number in np.unique(oof["fold"]):
        rows = oof["fold"] == number
        weights, _ = nnls(columns[~rows], gap[~rows])
        stacked[rows] = columns[rows] @ weights
    return stacked


def blends(
    other: str | None,
) -> dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]]:
    """Return the scored blends by name. "default" is the default recipe's blend.

    ``other`` names the component of another embedder's forest, if any.
    """

    def default(oof: dict) -> np.ndarray:
        return default_score(oof["forest"], oof["n-grams"])

    extras = [
        "gradient boosting",
        "TF-IDF subject classifier",
        "character n-grams",
        "ridge on 256 columns",
        "50 nearest rows",
        "forest, 64 columns",
    ]
    table: dict[str, Callable[[dict], np.ndarray]] = {"default": default}
    for name in [
        "forest",
        "n-grams",
        *extras,
        "forest with n-gram column",
        "subject shrink (SVM subject)",
    ]:
        table[f"{name} alone"] = lambda oof, name=name: oof[name]
    for name in extras:
        for weight in (0.1, 0.2):
            table[f"default + {weight} {name}"] = lambda oof, name=name, w=weight: (
                (1 - w) * default(oof) + w * oof[name]
            )
    table["forest with n-gram column + 0.2 n-grams"] = lambda oof: (
        0.8 * oof["forest with n-gram column"] + 0.2 * oof["n-grams"]
    )
    for weight in (0.25, 0.5):
        for subject in ("SVM subject", "true subject"):
            table[f"{weight} default + {1 - weight} subject shrink ({subject})"] = (
                lambda oof, w=weight, s=subject: (
                    w * default(oof) + (1 - w) * oof[f"subject shrink ({s})"]
                )
            )
    table["NNLS stack of all single components"] = lambda oof: nnls_stack(
        oof, ["forest", "n-grams", *extras, "forest with n-gram column"]
    )
    if other is not None:
        table[f"{other} alone"] = lambda oof: oof[other]
        table[f"{other} + {LEXICAL_WEIGHT} n-grams"] = lambda oof: default_score(
            oof[other], oof["n-grams"]
        )
        table[f"0.35 forest + 0.35 {other} + 0.3 n-grams"] = lambda oof: (
            0.35 * oof["forest"] + 0.35 * oof[other] + 0.3 * oof["n-grams"]
        )
    return table


def subject_correlations(
    score: np.ndarray, gap: np.ndarray, groups: np.ndarray
) -> tuple[float, float, dict[str, tuple[float, float]]]:
    """Return how ``score`` correlates with ``gap`` over all rows and inside subjects.

    The inside figure is the row-weighted mean of each subject's correlation.
    The dict maps each subject of at least 2% of the rows whose own
    correlation is 0 or below to that correlation and its share of the rows.
    """
    weighted, counted, uncorrelated = 0.0, 0, {}
    for name in np.unique(groups):
        member = groups == name
        if np.std(gap[member]) == 0 or np.std(score[member]) == 0:
            continue
        correlation = np.corrcoef(score[member], gap[member])[0, 1]
        weighted += member.sum() * correlation
        counted += member.sum()
        if correlation <= 0 and member.mean() >= 0.02:
            uncorrelated[name] = (correlation, member.mean())
    return float(np.corrcoef(score, gap)[0, 1]), weighted / counted, uncorrelated


def print_subject_signal(
    seed: int, oof: dict[str, np.ndarray], groups: np.ndarray, other: str | None
) -> None:
    """Print the subject correlations of the default score, and of ``other`` blended with n-grams."""
    gap = oof["a"] - oof["b"]
    overall, within, uncorrelated = subject_correlations(
        default_score(oof["forest"], oof["n-grams"]), gap, groups
    )
    print(
        f"  split {seed}: default score against gap, correlation {overall:.3f} "
        f"over all rows, {within:.3f} inside subjects. The SVM predicts the "
        f"right subject for {oof['SVM subject correct'].mean():.1%} of rows."
    )
    listed = ", ".join(
        f"{name} {value:+.3f} ({share:.1%})"
        for name, (value, share) in uncorrelated.items()
    )
    share = sum(share for _, share in uncorrelated.values())
    print(
        f"  split {seed}: subjects of 2% or more of the rows at or below 0 "
        f"({share:.1%} of rows): {listed}"
    )
    if other is not None:
        overall, within, _ = subject_correlations(
            default_score(oof[other], oof["n-grams"]), gap, groups
        )
        print(
            f"  split {seed}: {other} + {LEXICAL_WEIGHT} n-grams against gap, correlation "
            f"{overall:.3f} over all rows, {within:.3f} inside subjects"
        )


def load_other_embedding(path: Path, rows: int) -> np.ndarray:
    """Return the vectors saved in ``path``, exiting with a message unless they fit the table."""
    try:
        vectors = np.load(path, allow_pickle=False)
    except FileNotFoundError as error:
        raise SystemExit(
            f"{path} not found. Pass a .npy file written by numpy.save."
        ) from error
    except (OSError, ValueError) as error:
        # numpy raises ValueError for text and for pickled objects alike.
        raise SystemExit(
            f"cannot read {path}: it is not a .npy array of numbers. "
            "Write the vectors with numpy.save."
        ) from error
    if vectors.ndim != 2 or len(vectors) != rows:
        raise SystemExit(
            f"{path} has shape {vectors.shape}, expected ({rows}, dimension) "
            "with one row per table row, in table order"
        )
    return vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE,
        help="folder for the out-of-fold predictions",
    )
    parser.add_argument(
        "--other-embedding",
        type=Path,
        help=".npy file of another embedder's vectors, one row per table row in "
        "table order; adds a forest over them to the screen",
    )
    args = parser.parse_args()

    args.cache_dir.mkdir(parents=True, exist_ok=True)
    battles = load_battles(
        str(MMLU),
        "gpt-4-1106-preview",
        "mixtral-8x7b-instruct-v0.1",
        group_column="subject",
        require_group_column=True,
    )
    embeddings = EmbeddingCache().embed(
        get_embedder("wordllama"), battles.prompts, progress=True
    )
    components, other, other_name, fingerprints = dict(COMPONENTS), None, None, {}
    if args.other_embedding is not None:
        other = load_other_embedding(args.other_embedding, len(battles.prompts))
        other_name = f"forest on {args.other_embedding.stem}"
        components[other_name] = other_embedding_forest
        fingerprints[other_name] = hashlib.sha256(other.tobytes()).hexdigest()

    scores: dict[str, list[float]] = {}
    for seed in args.seeds:
        split = prepare_split(battles, embeddings, seed, other)
        path = args.cache_dir / f"split{seed}.npz"
        oof = out_of_fold(split, seed, args.folds, path, components, fingerprints)
        print_subject_signal(seed, oof, split["groups"], other_name)
        for name, blend in blends(other_name).items():
            scores.setdefault(name, []).append(cv_apgr(oof, blend(oof)))

    print(f"\n{args.folds}-fold CV APGR on training rows; splits {args.seeds}")
    print(
        "| blend | mean | vs default | lowest vs default | per split |\n"
        "| --- | --- | --- | --- | --- |"
    )
    default = np.array(scores["default"])
    for name, values in scores.items():
        values = np.array(values)
        print(
            f"| {name} | {values.mean():.4f} | {np.mean(values - default):+.4f} | "
            f"{np.min(values - default):+.4f} | "
            + " ".join(f"{v:.4f}" for v in values)
            + " |"
        )


if __name__ == "__main__":
    main()
