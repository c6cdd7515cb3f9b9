"""The Controller and Router loading errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from rorf_core import Controller, RouterNotFoundError
from rorf_core.training import TrainingConfig, train_router


@pytest.fixture
def router_dir(battles_file: Path, keyword_plugin, cache, tmp_path: Path) -> Path:
    config = TrainingConfig(
        dataset=str(battles_file), embedder="keyword-test", scorer_params={"n_estimators": 10, "max_depth": 5}
    )
    train_router(config, cache=cache, out=tmp_path / "router", progress=False)
    return tmp_path / "router"


@pytest.mark.parametrize("threshold", [-0.01, 1.01, "high"])
def test_threshold_outside_range_rejected(router_dir: Path, threshold: object) -> None:
    with pytest.raises(ValueError, match=r"threshold must be"):
        Controller(router=str(router_dir), threshold=threshold)  # type: ignore[arg-type]


def test_route_returns_given_model_names(router_dir: Path) -> None:
    always_a = Controller(router=str(router_dir), model_a="big", model_b="small", threshold=0.0)
    always_b = Controller(router=str(router_dir), model_a="big", model_b="small", threshold=1.0)
    assert always_a.route("math question") == "big"
    # A threshold of 1 sends a prompt to A only when its win rate is exactly 1.
    rate = always_b.predict_proba("law question")
    assert always_b.route("law question") == ("big" if rate >= 1.0 else "small")
    assert always_a.batch_route(["a", "b"]) == ["big", "big"]


def test_missing_router_directory_named(tmp_path: Path) -> None:
    with pytest.raises(RouterNotFoundError, match="nowhere"):
        Controller(router=str(tmp_path / "nowhere"))


def test_router_directory_missing_file(router_dir: Path) -> None:
    (router_dir / "scorer.safetensors").unlink()
    with pytest.raises(RouterNotFoundError) as caught:
        Controller(router=str(router_dir))
    assert "scorer.safetensors" in str(caught.value)
    assert str(router_dir) in str(caught.value)


def test_invalid_prompt_in_batch_reports_index(router_dir: Path) -> None:
    from rorf_core import InvalidInputError

    controller = Controller(router=str(router_dir))
    with pytest.raises(InvalidInputError) as caught:
        controller.batch_calculate_win_rate(["fine", "also fine", "  "])
    assert caught.value.index == 2
