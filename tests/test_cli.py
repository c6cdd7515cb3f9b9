"""The rorf command: train, calibrate and route through click."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from conftest import synthetic_battles, write_table
from rorf_core import Controller
from rorf_core.cli import _add_commands, cli

SMALL = ["--n-estimators", "15", "--max-depth", "6"]


def invoke(*args: str) -> Result:
    _add_commands()
    return CliRunner().invoke(cli, list(args))


def train_hashing(dataset: Path, out: Path) -> Result:
    return invoke(
        "train", "--dataset", str(dataset), "--model-a", "strong/model", "--model-b", "weak-model",
        "--embedder", "hashing", *SMALL, "--out", str(out),
    )


@pytest.fixture
def trained(tmp_path: Path) -> tuple[Path, Path]:
    dataset = write_table(tmp_path / "battles.parquet", synthetic_battles(400))
    result = train_hashing(dataset, tmp_path / "router")
    assert result.exit_code == 0, result.output
    return dataset, tmp_path / "router"


def test_train_reports_and_caches(trained: tuple[Path, Path]) -> None:
    dataset, router = trained
    metadata = json.loads((router / "router.json").read_text())
    assert metadata["embedder"]["name"] == "hashing"
    assert metadata["model_a"] == "strong/model"
    second = train_hashing(dataset, router)
    assert second.exit_code == 0, second.output
    assert "embedded 0 of 400 prompts (400 from the embedding cache)" in second.output
    assert "APGR" in second.output
    assert "always-A" in second.output


def test_train_missing_column_writes_nothing(tmp_path: Path) -> None:
    dataset = write_table(tmp_path / "b.parquet", synthetic_battles(50))
    result = invoke("train", "--dataset", str(dataset), "--model-a", "nope", "--model-b", "weak-model",
                    "--embedder", "hashing", "--out", str(tmp_path / "r"))
    assert result.exit_code != 0
    assert "strong/model/score" in str(result.exception)
    assert not (tmp_path / "r").exists()


def test_train_group_options(tmp_path: Path) -> None:
    rows = synthetic_battles(200)
    rows["topic"] = [prompt.split()[0] for prompt in rows["Input"]]
    dataset = write_table(tmp_path / "b.parquet", rows)
    out = tmp_path / "router"
    result = invoke("train", "--dataset", str(dataset), "--model-a", "strong/model", "--model-b", "weak-model",
                    "--embedder", "hashing", *SMALL, "--group-column", "topic", "--group-weight", "0.3",
                    "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "target smoothed toward the mean gap of 4 'topic' groups (weight 0.3)" in result.output
    group = json.loads((out / "router.json").read_text())["training"]["group_target"]
    assert group["column"] == "topic"
    assert group["weight"] == 0.3


def test_train_group_weight_out_of_range(tmp_path: Path) -> None:
    dataset = write_table(tmp_path / "b.parquet", synthetic_battles(50))
    result = invoke("train", "--dataset", str(dataset), "--embedder", "hashing", "--group-weight", "1.5",
                    "--out", str(tmp_path / "r"))
    assert result.exit_code == 2
    assert "--group-weight" in result.output
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--recipe", "rorf", "--group-weight", "0.5"], "group smoothing requires a regression label scheme"),
        (["--lexical-weight", "nan"], "lexical_weight must be in [0, 1], got nan"),
        (["--eval-fraction", "nan"], "eval_fraction must be between 0 and 1"),
    ],
)
def test_train_config_error_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    message: str,
) -> None:
    from rorf_core.cli import main

    dataset = write_table(tmp_path / "b.parquet", synthetic_battles(50))
    argv = ["rorf", "train", "--dataset", str(dataset), "--embedder", "hashing", *options,
            "--out", str(tmp_path / "r")]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    stderr = capsys.readouterr().err
    assert stderr.startswith(f"Error: {message}")
    assert "Traceback" not in stderr
    assert not (tmp_path / "r").exists()


def test_calibrate_half_then_controller_sends_half(trained: tuple[Path, Path]) -> None:
    dataset, router = trained
    result = invoke("calibrate", "--router", str(router), "--dataset", str(dataset), "--model-a-pct", "0.5")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output.strip().splitlines()[-1])
    assert answer["rows"] == 400
    assert answer["dataset"] == str(dataset)
    cached = list((router / "calibration-cache").glob("*.npy"))
    assert len(cached) == 1
    prompts = synthetic_battles(400)["Input"]
    controller = Controller(router=str(router), threshold=answer["threshold"])
    share = np.mean([model == "strong/model" for model in controller.batch_route(prompts)])
    assert abs(share - answer["reached_pct"]) < 1e-9
    if abs(answer["reached_pct"] - 0.5) > 0.01:
        assert "cannot be reached" in result.output


def test_calibrate_share_out_of_range(trained: tuple[Path, Path]) -> None:
    dataset, router = trained
    result = invoke("calibrate", "--router", str(router), "--dataset", str(dataset), "--model-a-pct", "1.5")
    assert result.exit_code != 0
    assert "[0, 1]" in result.output


def test_calibrate_all_ties_warns(tmp_path: Path, trained: tuple[Path, Path]) -> None:
    _, router = trained
    same = write_table(tmp_path / "same.jsonl", {"Input": ["identical prompt"] * 20})
    result = invoke("calibrate", "--router", str(router), "--dataset", str(same), "--model-a-pct", "0.5")
    assert result.exit_code == 0, result.output
    assert "cannot be reached" in result.output
    answer = json.loads(result.output.strip().splitlines()[-1])
    assert answer["reached_pct"] in (0.0, 1.0)


def test_route_arguments_and_files(tmp_path: Path, trained: tuple[Path, Path]) -> None:
    _, router = trained
    text_file = tmp_path / "prompts.txt"
    text_file.write_text("math question\n\nlaw question\n")
    jsonl_file = tmp_path / "prompts.jsonl"
    jsonl_file.write_text(json.dumps({"Input": "code question"}) + "\n")
    for args in (["math question", "law question"], ["--input", str(text_file)], ["--input", str(jsonl_file)]):
        result = invoke("route", "--router", str(router), "--threshold", "0.5", *args)
        assert result.exit_code == 0, result.output
        lines = [json.loads(line) for line in result.output.strip().splitlines()]
        assert [line["index"] for line in lines] == list(range(len(lines)))
        for line in lines:
            expected = "strong/model" if line["win_rate"] >= 0.5 else "weak-model"
            assert line["model"] == expected
    assert len(lines) == 1


def test_route_bad_threshold(trained: tuple[Path, Path]) -> None:
    _, router = trained
    result = invoke("route", "--router", str(router), "--threshold", "2", "hello")
    assert result.exit_code != 0
    assert "threshold must be in [0, 1]" in str(result.exception)


def test_route_default_example_router() -> None:
    result = invoke("route", "What is 2 + 2?")
    assert result.exit_code == 0, result.output
    line = json.loads(result.output)
    assert line["model"] in ("gpt-4-1106-preview", "mixtral-8x7b-instruct-v0.1")
    assert 0.0 <= line["win_rate"] <= 1.0


def test_split_matches_training_split(tmp_path: Path) -> None:
    from rorf_core.data import load_battles
    from rorf_core.training import split_battles

    dataset = write_table(tmp_path / "battles.parquet", synthetic_battles(120))
    result = invoke("split", "--dataset", str(dataset), "--seed", "3", "--out-dir", str(tmp_path / "s"))
    assert result.exit_code == 0, result.output
    train, held_out = split_battles(load_battles(str(dataset)), 0.2, 3)
    written_eval = load_battles(str(tmp_path / "s" / "eval.parquet"))
    written_train = load_battles(str(tmp_path / "s" / "train.parquet"))
    assert written_eval.prompts == held_out.prompts
    assert written_train.prompts == train.prompts
    assert len(written_eval) == 24


def test_train_lexical_weight(tmp_path: Path) -> None:
    dataset = write_table(tmp_path / "b.parquet", synthetic_battles(200))
    base = ["train", "--dataset", str(dataset), "--model-a", "strong/model", "--model-b", "weak-model",
            "--embedder", "hashing", *SMALL]
    result = invoke(*base, "--lexical-weight", "0.6", "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert "blended with an n-gram model" in result.output
    assert "(weight 0.6)" in result.output
    assert json.loads((tmp_path / "r" / "router.json").read_text())["lexical"]["weight"] == 0.6
    off = invoke(*base, "--lexical-weight", "0", "--out", str(tmp_path / "off"))
    assert off.exit_code == 0, off.output
    assert "n-gram" not in off.output
    assert json.loads((tmp_path / "off" / "router.json").read_text())["lexical"] is None
    bad = invoke(*base, "--lexical-weight", "1.5", "--out", str(tmp_path / "bad"))
    assert bad.exit_code == 2
    assert "--lexical-weight" in bad.output
    assert not (tmp_path / "bad").exists()
