"""The n-gram ridge model: parity with scikit-learn, storage, and training rows only."""

from __future__ import annotations

import itertools
import json
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import MMLU, config_for, synthetic_battles, write_table

from rorf_core import training as training_module
from rorf_core.errors import InvalidConfigError, RouterFormatError
from rorf_core.lexical import LexicalModel, fit_lexical, prompt_ngrams
from rorf_core.router import Router
from rorf_core.training import TrainingConfig, held_out_positions, train_router


def crc(gram: str) -> int:
    return zlib.crc32(gram.encode("utf-8"))


def test_ngrams_are_lowercase_words_and_pairs() -> None:
    keys, counts = prompt_ngrams("The cat, the CAT a")
    # "a" has one character, so it is not a word; pairs skip over it too.
    expected = {crc("the"): 2, crc("cat"): 2, crc("the cat"): 2, crc("cat the"): 1}
    assert dict(zip(keys.tolist(), counts.tolist())) == expected
    assert keys.tolist() == sorted(keys.tolist())


def mmlu_prompts(count: int) -> tuple[list[str], np.ndarray]:
    if not MMLU.is_file():
        pytest.skip(f"shared MMLU data not found at {MMLU}")
    from rorf_core.data import load_battles

    battles = load_battles(str(MMLU), "gpt-4-1106-preview", "mixtral-8x7b-instruct-v0.1")
    return battles.prompts[:count], (battles.scores_a - battles.scores_b)[:count]


def test_matches_scikit_learn_tfidf_and_ridge() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge

    prompts, gap = mmlu_prompts(1200)
    words = re.compile(r"\b\w\w+\b")

    def analyzer(text: str) -> list[int]:
        tokens = words.findall(text.lower())
        return [crc(g) for g in tokens + [f"{a} {b}" for a, b in itertools.pairwise(tokens)]]

    vectorizer = TfidfVectorizer(analyzer=analyzer, min_df=2, sublinear_tf=True)
    ridge = Ridge(alpha=3.0).fit(vectorizer.fit_transform(prompts[:1000]), gap[:1000])
    model = fit_lexical([prompt_ngrams(p) for p in prompts[:1000]], gap[:1000], alpha=3.0)
    assert model.keys.size == len(vectorizer.vocabulary_)
    expected = ridge.predict(vectorizer.transform(prompts[1000:]))
    np.testing.assert_allclose(model.predict(prompts[1000:]), expected, atol=1e-6)
    assert np.std(expected) > 0.01  # the comparison is not between constants


def small_model() -> LexicalModel:
    prompts = ["math proof now", "math proof later", "law case now", "law case later"]
    return fit_lexical([prompt_ngrams(p) for p in prompts], np.array([1.0, 1.0, -1.0, -1.0]), alpha=0.1)


def test_unknown_ngrams_give_the_intercept() -> None:
    model = small_model()
    assert model.predict(["zebra giraffe"])[0] == pytest.approx(model.intercept)
    math, law = model.predict(["math proof", "law case"])
    assert math > 0.5 > -0.5 > law


def test_no_shared_ngram_predicts_the_mean() -> None:
    model = fit_lexical([prompt_ngrams("alpha"), prompt_ngrams("beta")], np.array([1.0, 0.0]))
    assert model.keys.size == 0
    np.testing.assert_allclose(model.predict(["alpha", "gamma"]), [0.5, 0.5])


def test_state_round_trip_and_checks() -> None:
    model = small_model()
    meta, arrays = model.to_state()
    restored = LexicalModel.from_state(json.loads(json.dumps(meta)), arrays)
    np.testing.assert_array_equal(restored.predict(["math case"]), model.predict(["math case"]))
    short = {**arrays, "lexical.coef": arrays["lexical.coef"][:-1]}
    with pytest.raises(RouterFormatError, match="disagree"):
        LexicalModel.from_state(meta, short)
    unsorted = {**arrays, "lexical.keys": arrays["lexical.keys"][::-1].copy()}
    with pytest.raises(RouterFormatError, match="sorted"):
        LexicalModel.from_state(meta, unsorted)
    with pytest.raises(RouterFormatError, match="lexical.idf"):
        LexicalModel.from_state(meta, {k: v for k, v in arrays.items() if k != "lexical.idf"})


def test_saved_router_keeps_the_ngram_model(battles_file: Path, keyword_plugin, cache, tmp_path: Path) -> None:
    result = train_router(config_for(battles_file), cache=cache, out=tmp_path / "r", progress=False)
    metadata = json.loads((tmp_path / "r" / "router.json").read_text())
    assert metadata["lexical"]["weight"] == 0.3
    assert metadata["lexical"]["ngrams"] == result.router.lexical.keys.size
    assert result.router.lexical.keys.size > 0
    loaded = Router.from_pretrained(tmp_path / "r")
    np.testing.assert_array_equal(loaded.lexical.coef, result.router.lexical.coef)
    # A bad weight in the file is a format error that names the value.
    metadata["lexical"]["weight"] = 1.5
    (tmp_path / "r" / "router.json").write_text(json.dumps(metadata))
    with pytest.raises(RouterFormatError, match="1.5"):
        Router.from_pretrained(tmp_path / "r")


def test_weight_zero_and_rorf_recipe_leave_it_out(battles_file: Path, keyword_plugin, cache) -> None:
    plain = train_router(config_for(battles_file, lexical_weight=0.0), cache=cache, progress=False)
    rorf = train_router(config_for(battles_file, recipe="rorf"), cache=cache, progress=False)
    for router in (plain.router, rorf.router):
        assert router.lexical is None
        assert router.metadata()["lexical"] is None
    assert plain.router.training["config"]["lexical_weight"] == 0.0


def test_named_weight_needs_regression(battles_file: Path, keyword_plugin, cache) -> None:
    with pytest.raises(InvalidConfigError, match="lexical_weight needs a regression"):
        train_router(config_for(battles_file, recipe="rorf", lexical_weight=0.3), cache=cache)
    with pytest.raises(ValueError, match="lexical_weight must be in"):
        TrainingConfig(dataset="x.parquet", lexical_weight=1.5)


def test_router_needs_model_for_weight(battles_file: Path, keyword_plugin, cache) -> None:
    router = train_router(config_for(battles_file), cache=cache, progress=False).router
    with pytest.raises(ValueError, match="no n-gram model"):
        Router(embedder=router.embedder, scorer=router.scorer, model_a="a", model_b="b",
               label_scheme="score_gap", decision_rule="predicted_gain", lexical_weight=0.3)


@pytest.mark.parametrize("search", [False, True])
def test_ngram_model_never_reads_held_out_rows(
    tmp_path: Path, keyword_plugin, cache, monkeypatch: pytest.MonkeyPatch, search: bool
) -> None:
    rows = synthetic_battles(300)
    held_out = set(held_out_positions(300, 0.2, 0).tolist())
    # A word that only held-out rows use: no fitted vocabulary may hold it.
    rows["Input"] = [p + (" heldoutword" if i in held_out else " trainword") for i, p in enumerate(rows["Input"])]
    path = write_table(tmp_path / "t.parquet", rows)
    fitted: list[int] = []
    real_fit = training_module.fit_lexical

    def recording(ngrams, target, **options):
        model = real_fit(ngrams, target, **options)
        assert crc("heldoutword") not in set(model.keys.tolist())
        assert crc("trainword") in set(model.keys.tolist())
        fitted.append(len(ngrams))
        return model

    monkeypatch.setattr(training_module, "fit_lexical", recording)
    result = train_router(config_for(path), cache=cache, progress=False, search_budget=60.0 if search else None)
    # The final fit reads all 240 training rows; search folds read fewer.
    final = [240] if result.router.lexical is not None else []
    assert result.train_rows == 240
    if not search:
        assert fitted == final == [240]
    else:
        folds = fitted[: len(fitted) - len(final)]
        assert fitted[len(folds):] == final
        assert folds
        assert all(count < 240 for count in folds)
        weights = {t["settings"]["lexical_weight"] for t in result.router.training["search"]["trials"]}
        assert weights == {0.0, 0.3}


def test_format_docs_list_the_ngram_keys(battles_file: Path, keyword_plugin, cache, tmp_path: Path) -> None:
    docs = (Path(__file__).resolve().parents[1] / "docs" / "router-format.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`([A-Za-z_][\w.]*)`", docs))
    router = train_router(config_for(battles_file), cache=cache, progress=False).router
    _, arrays = router.lexical.to_state()
    assert [key for key in [*router.metadata()["lexical"], *arrays] if key not in documented] == []


def ngram_router_dir(battles_file: Path, cache, tmp_path: Path) -> Path:
    train_router(config_for(battles_file), cache=cache, out=tmp_path / "r", progress=False)
    return tmp_path / "r"


def edit_lexical(directory: Path, change) -> None:
    path = directory / "router.json"
    metadata = json.loads(path.read_text())
    change(metadata)
    path.write_text(json.dumps(metadata))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(lexical=None), "n-gram arrays .* but its 'lexical' entry is null"),
        (lambda m: m.pop("lexical"), "'lexical' entry is null"),
        (lambda m: m.update(lexical=[1]), "'lexical' must be null or an object"),
        (lambda m: m["lexical"].update(weight=None), r"'lexical.weight' must be a number in \(0, 1\], got None"),
        (lambda m: m["lexical"].update(weight="0.3"), "got '0.3'"),
        (lambda m: m["lexical"].update(weight=0), "got 0"),
        (lambda m: m["lexical"].pop("intercept"), "missing or invalid 'intercept'"),
        (lambda m: m["lexical"].update(intercept=float("nan")), "'lexical.intercept' must be finite"),
    ],
)
def test_bad_lexical_entry_rejected(battles_file: Path, keyword_plugin, cache, tmp_path: Path, change, message: str) -> None:
    directory = ngram_router_dir(battles_file, cache, tmp_path)
    edit_lexical(directory, change)
    with pytest.raises(RouterFormatError, match=message) as caught:
        Router.from_pretrained(directory)
    assert str(directory) in str(caught.value)


@pytest.mark.parametrize(
    ("name", "bad", "message"),
    [
        ("lexical.coef", lambda a: a.astype(np.int32), "must be a 1-D float32 array, got int32"),
        ("lexical.coef", lambda a: np.where(np.arange(a.size) == 0, np.nan, a).astype(np.float32), "contains NaN"),
        ("lexical.idf", lambda a: np.full(a.size, np.inf, np.float32), "contains NaN or infinity"),
        ("lexical.keys", lambda a: a.reshape(1, -1), "must be a 1-D uint32 array"),
    ],
)
def test_bad_lexical_array_rejected(battles_file: Path, keyword_plugin, cache, tmp_path: Path, name: str, bad, message: str) -> None:
    from safetensors.numpy import load_file, save_file

    directory = ngram_router_dir(battles_file, cache, tmp_path)
    arrays = load_file(str(directory / "scorer.safetensors"))
    arrays[name] = bad(arrays[name])
    save_file(arrays, str(directory / "scorer.safetensors"))
    with pytest.raises(RouterFormatError, match=message):
        Router.from_pretrained(directory)
