"""Routing quality of RoRF's recipe and the default recipe, with an ablation.

On the shared MMLU data (GPT-4 as model A, Mixtral as model B), with the
default embedder (wordllama), over 5 random 80/20 splits (seeds 0-4, the
split of ``rorf train --eval-fraction 0.2 --seed S``), prints the mean and
standard deviation of APGR, CPT(50%) and CPT(80%) for random routing, the
oracle, RoRF's recipe, each step from it to the default recipe, and the
default recipe itself. Every forest is fitted on the training rows of its
split only; the held-out rows are only scored.

Run from the repository root::

    python benchmarks/bench_quality.py [--seeds 0 1 2 3 4] [--search]

``--search`` adds a row for the default recipe with ``rorf train --search``
(cross-validation on the training rows); it multiplies the run time by
about ten. ``--cv-folds K`` also prints the evidence for smoothing the
target by subject and for the n-gram model: K-fold cross-validation APGR
on each split's training rows for the plain gap, the smoothed target, and
the smoothed target blended with the n-gram model (about 2 minutes per
split for K = 10).
``--ablation-only --forest-seed-offset 100`` refits the ablation forests
with other seeds, to show how much the forest's own randomness moves APGR.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rorf_core import get_embedder
from rorf_core.cache import EmbeddingCache
from rorf_core.data import Battles, load_battles
from rorf_core.evaluation import oracle_curve, random_curve, routing_curve, routing_metrics
from rorf_core.features import DEFAULT_TEXT_FEATURES, model_inputs
from rorf_core.forest.sklearn_forest import ExtraTreesRegressorScorer, RandomForestScorer
from rorf_core.group_target import GroupTarget, smooth_gap
from rorf_core.labels import gain_to_score, get_decision_rule, get_label_scheme
from rorf_core.lexical import fit_lexical, prompt_ngrams
from rorf_core.training import split_battles

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RORF_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
MMLU = DATA / "mmlu_gpt4_mixtral.parquet"
MODEL_A = "gpt-4-1106-preview"
MODEL_B = "mixtral-8x7b-instruct-v0.1"
RORF_FOREST = {"n_estimators": 100, "max_depth": 20, "max_features": 1.0}
DEFAULT_FOREST = {"n_estimators": 300, "max_features": 0.5, "min_samples_leaf": 10}
#: The smoothing of `rorf train --group-column subject --group-weight 0.5`.
SUBJECT_TARGET = GroupTarget(column="subject", weight=0.5, prior_rows=20.0)
PLAIN_ROW = "  + first 32 dims only"
SMOOTHED_ROW = "  + target smoothed by subject mean"
LEXICAL_ROW = "  + 0.3 share for the n-gram model"
#: The n-gram model's share in the default recipe's predicted gain.
LEXICAL_WEIGHT = 0.3
DEFAULT_ROW = "default recipe (rorf train)"

Split = tuple[Battles, Battles, np.ndarray, np.ndarray]


def rorf_rows(split: Split, seed: int) -> dict[str, np.ndarray]:
    """RoRF's 4-class forest, scored by p0 + p1 and by (1 + p0 - p3) / 2."""
    train, held_out, train_x, eval_x = split
    scheme = get_label_scheme("rorf")
    scorer = RandomForestScorer(**RORF_FOREST, random_state=seed)
    scorer.fit(train_x, scheme(train.scores_a, train.scores_b))
    proba = scorer.predict_proba(eval_x)
    return {
        "RoRF recipe (4 classes, p0 + p1)": get_decision_rule("p_a_needed")(proba, scorer.classes_, scheme.labels),
        "  same forest, rule p0 - p3": get_decision_rule("p_a_minus_p_b")(proba, scorer.classes_, scheme.labels),
    }


def gap_regressor(
    split: Split,
    seed: int,
    columns: int | None,
    features: tuple[str, ...],
    group: GroupTarget | None = None,
    lexical_weight: float = 0.0,
) -> np.ndarray:
    """Extra-trees regressor on score_A - score_B, as the default recipe fits it."""
    train, held_out, train_x, eval_x = split
    gap = train.scores_a - train.scores_b
    # Group means come from the training rows of the split only.
    target = gap if group is None else smooth_gap(gap, train.groups, group)
    scorer = ExtraTreesRegressorScorer(**DEFAULT_FOREST, random_state=seed)
    scorer.fit(model_inputs(train_x, train.prompts, embedding_columns=columns, text_features=features), target)
    inputs = model_inputs(eval_x, held_out.prompts, embedding_columns=columns, text_features=features)
    gain = scorer.predict(inputs)
    if lexical_weight:
        lexical = fit_lexical([prompt_ngrams(p) for p in train.prompts], target)
        gain = (1 - lexical_weight) * gain + lexical_weight * lexical.predict(held_out.prompts)
    return gain_to_score(gain, float(np.max(np.abs(gap))))


def ablation_rows(split: Split, seed: int) -> dict[str, np.ndarray]:
    return {
        "  regression on the gap, 256 dims": gap_regressor(split, seed, None, ()),
        "  + 12 text features": gap_regressor(split, seed, None, DEFAULT_TEXT_FEATURES),
        PLAIN_ROW: gap_regressor(split, seed, 32, DEFAULT_TEXT_FEATURES),
        SMOOTHED_ROW: gap_regressor(split, seed, 32, DEFAULT_TEXT_FEATURES, SUBJECT_TARGET),
        LEXICAL_ROW: gap_regressor(split, seed, 32, DEFAULT_TEXT_FEATURES, SUBJECT_TARGET, LEXICAL_WEIGHT),
    }



def trained_router_scores(split: Split, seed: int, search: bool) -> np.ndarray:
    """Held-out scores of `rorf train --seed S` (with --search if asked), run in-process."""
    from rorf_core.training import TrainingConfig, train_router

    _, held_out, _, eval_x = split
    config = TrainingConfig(dataset=str(MMLU), model_a=MODEL_A, model_b=MODEL_B, seed=seed)
    result = train_router(config, progress=False, search_budget=1e9 if search else None)
    # train_router splits the table with the same seed, so its held-out rows are ours.
    assert result.router.calibration["rows"] == len(held_out)
    if search:
        print(f"    seed {seed}: search chose {result.search.best}")
    return result.router.win_rate_from_embeddings(eval_x, held_out.prompts)


def default_rows(split: Split, seed: int) -> dict[str, np.ndarray]:
    return {DEFAULT_ROW: trained_router_scores(split, seed, search=False)}


def search_rows(split: Split, seed: int) -> dict[str, np.ndarray]:
    return {"default recipe with --search": trained_router_scores(split, seed, search=True)}


#: The steps whose CV evidence --cv-folds prints: (group weight, n-gram weight).
CV_STEPS = {"plain gap": (0.0, 0.0), "smoothed": (SUBJECT_TARGET.weight, 0.0), "+ n-grams": (SUBJECT_TARGET.weight, LEXICAL_WEIGHT)}


def cv_steps(split: Split, seed: int, folds: int) -> dict[str, float]:
    """CV APGR on the split's training rows for each of ``CV_STEPS``."""
    from rorf_core.search import search_settings

    train, _, train_x, _ = split
    gap = train.scores_a - train.scores_b
    inputs = model_inputs(train_x, train.prompts, embedding_columns=32, text_features=DEFAULT_TEXT_FEATURES)
    ngrams = [prompt_ngrams(p) for p in train.prompts]

    def fit_and_score(settings: dict[str, Any], fit_rows: np.ndarray, score_rows: np.ndarray) -> np.ndarray:
        group_weight, lexical_weight = CV_STEPS[settings["step"]]
        target = gap[fit_rows]
        if group_weight:
            group = GroupTarget(column="subject", weight=group_weight, prior_rows=20.0)
            target = smooth_gap(target, train.groups[fit_rows], group)
        scorer = ExtraTreesRegressorScorer(**DEFAULT_FOREST, random_state=seed).fit(inputs[fit_rows], target)
        gain = scorer.predict(inputs[score_rows])
        if lexical_weight:
            lexical = fit_lexical([ngrams[i] for i in fit_rows], target)
            gain = (1 - lexical_weight) * gain + lexical_weight * lexical.predict_ngrams([ngrams[i] for i in score_rows])
        return gain

    candidates = [{"step": step} for step in CV_STEPS]
    result = search_settings(fit_and_score, train.scores_a, train.scores_b, candidates, budget_seconds=1e9, seed=seed, folds=folds)
    return {trial.settings["step"]: trial.cv_apgr for trial in result.trials}


def print_cv(cv: dict[int, dict[str, float]], folds: int) -> None:
    print(f"\n{folds}-fold CV APGR on each split's training rows (held-out rows unused):")
    steps = list(CV_STEPS)
    print(f"{'split':<8} " + " ".join(f"{step:>10}" for step in steps) + f" {'smoothing':>10} {'n-grams':>10}")
    gains = []
    for seed, apgr in cv.items():
        gain = (apgr["smoothed"] - apgr["plain gap"], apgr["+ n-grams"] - apgr["smoothed"])
        gains.append(gain)
        print(f"{seed:<8} " + " ".join(f"{apgr[step]:>10.4f}" for step in steps) + f" {gain[0]:>+10.4f} {gain[1]:>+10.4f}")
    mean = np.mean(gains, axis=0)
    print(f"{'mean':<8} " + " ".join(f"{'':>10}" for _ in steps) + f" {mean[0]:>+10.4f} {mean[1]:>+10.4f}")


def metrics_of(scores_or_curve: Any, held_out: Battles) -> tuple[float, float, float]:
    curve = scores_or_curve
    if isinstance(scores_or_curve, np.ndarray):
        curve = routing_curve(scores_or_curve, held_out.scores_a, held_out.scores_b)
    metrics = routing_metrics(curve, held_out.scores_a, held_out.scores_b)
    return metrics.apgr, metrics.cpt_50 or float("nan"), metrics.cpt_80 or float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="split seeds, as in rorf train --seed")
    parser.add_argument("--search", action="store_true", help="add the --search row (slow)")
    parser.add_argument("--cv-folds", type=int, default=0, help="also print K-fold CV on training rows for the subject smoothing and the n-gram model")
    parser.add_argument("--ablation-only", action="store_true", help="fit only the ablation forests, which takes about 1 minute per split")
    parser.add_argument("--forest-seed-offset", type=int, default=0, help="add this to the random_state of the RoRF and ablation forests")
    args = parser.parse_args()

    battles = load_battles(str(MMLU), MODEL_A, MODEL_B, group_column="subject", require_group_column=True)
    embeddings = EmbeddingCache().embed(get_embedder("wordllama"), battles.prompts, progress=True)
    sections: list[Callable[[Split, int], dict[str, np.ndarray]]] = [ablation_rows]
    if not args.ablation_only:
        sections = [rorf_rows, ablation_rows, default_rows]
    # The rorf-train row seeds its split and forest together, so no offset applies to it.
    offset_sections = (rorf_rows, ablation_rows)
    if args.search:
        sections.append(search_rows)
    results: dict[str, list[tuple[float, float, float]]] = {}
    cv: dict[int, dict[str, float]] = {}
    started = time.perf_counter()
    for seed in args.seeds:
        train, held_out = split_battles(battles, 0.2, seed)
        # No rows are dropped, so table row numbers index the embeddings.
        train_x, eval_x = embeddings[train.rows], embeddings[held_out.rows]
        split = (train, held_out, train_x, eval_x)
        rows: dict[str, Any] = {
            "random": random_curve(held_out.scores_a, held_out.scores_b),
            "oracle": oracle_curve(held_out.scores_a, held_out.scores_b),
        }
        for section in sections:
            forest_seed = seed + args.forest_seed_offset if section in offset_sections else seed
            rows.update(section(split, forest_seed))
        for name, value in rows.items():
            results.setdefault(name, []).append(metrics_of(value, held_out))
        if args.cv_folds:
            cv[seed] = cv_steps(split, seed, args.cv_folds)
        print(f"  seed {seed} done after {time.perf_counter() - started:.0f} s")
    print_table(results, args.seeds)
    if cv:
        print_cv(cv, args.cv_folds)


def print_table(results: dict[str, list[tuple[float, float, float]]], seeds: list[int]) -> None:
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; seeds {seeds}")
    print(f"{'router':<40} {'APGR':>15} {'CPT(50%)':>15} {'CPT(80%)':>15}")
    for name, values in results.items():
        table = np.asarray(values)
        cells = [f"{m:.3f} ± {s:.3f}" for m, s in zip(table.mean(axis=0), table.std(axis=0))]
        print(f"{name:<40} {cells[0]:>15} {cells[1]:>15} {cells[2]:>15}")
    for name in (PLAIN_ROW, SMOOTHED_ROW, LEXICAL_ROW):
        print(f"{name.strip()!r} APGR per split: {np.round(np.asarray(results[name])[:, 0], 4).tolist()}")
    if DEFAULT_ROW not in results:
        return
    default = np.asarray(results[DEFAULT_ROW])[:, 0]
    rorf = np.asarray(results["RoRF recipe (4 classes, p0 + p1)"])[:, 0]
    print(f"\ndefault - RoRF recipe, APGR per split: {np.round(default - rorf, 3).tolist()}")
    print(f"default recipe APGR per split: {np.round(default, 4).tolist()}")


if __name__ == "__main__":
    main()
