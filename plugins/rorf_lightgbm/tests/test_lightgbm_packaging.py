"""Build the rorf-lightgbm wheel and install it into a new virtual environment.

Marked ``packaging``: it reads the package index for rorf-core's and
LightGBM's dependencies and takes about a minute with a warm pip cache, five
without. ``-m "not packaging"`` or ``RORF_SKIP_PACKAGING=1`` leaves it out.
"""

from __future__ import annotations

import email.parser
import json
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.packaging,
    pytest.mark.skipif(
        os.environ.get("RORF_SKIP_PACKAGING") == "1",
        reason="RORF_SKIP_PACKAGING=1 skips the wheel builds",
    ),
]

PLUGIN_ROOT = Path(__file__).resolve().parents[1]
CORE_ROOT = PLUGIN_ROOT.parents[1]

# Runs inside the new environment: find the plugin, fit, save and load.
CHECK_SCRIPT = """
import importlib.metadata, json
import numpy as np
import rorf_lightgbm
from rorf_core.plugins import plugin_failures, scorer_entries

entry = scorer_entries()["lightgbm-rf"]
rng = np.random.default_rng(0)
X = rng.normal(size=(120, 3)).astype(np.float32)
y = (X[:, 0] > 0).astype(int)
scorer = entry.factory(n_estimators=5, num_leaves=4).fit(X, y)
restored = entry.factory.from_state(scorer.get_params(), *scorer.to_state())
points = importlib.metadata.entry_points(group="rorf")
print(json.dumps({
    "entry_points": [[p.name, p.value, p.dist.name] for p in points],
    "distribution": entry.distribution,
    "failures": [failure.plugin for failure in plugin_failures()],
    "module": rorf_lightgbm.__file__,
    "round_trip_equal": bool(
        np.array_equal(restored.predict_proba(X), scorer.predict_proba(X))
    ),
}))
"""


def run(command: list[object], **kwargs: object) -> str:
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    result = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        **kwargs,
    )
    assert result.returncode == 0, (
        f"{command} failed with code {result.returncode}:\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout


def read_wheel(wheel: Path) -> tuple[list[str], email.message.Message, str]:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(name for name in names if name.endswith(".dist-info/METADATA"))
        points = next(
            name for name in names if name.endswith(".dist-info/entry_points.txt")
        )
        metadata = email.parser.Parser().parsestr(archive.read(info).decode())
        return names, metadata, archive.read(points).decode()


def test_wheel_builds_and_installs_in_new_venv(tmp_path):
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--wheel", "--outdir", dist, PLUGIN_ROOT])
    (wheel,) = dist.glob("rorf_lightgbm-*.whl")

    names, metadata, entry_points = read_wheel(wheel)
    assert "rorf_lightgbm/scorer.py" in names
    assert "rorf_lightgbm/_model_text.py" in names
    assert not [name for name in names if name.startswith("tests/")]
    assert metadata["Name"] == "rorf-lightgbm"
    requires = [req.replace(" ", "") for req in metadata.get_all("Requires-Dist")]
    assert any(req.startswith("rorf-core") and "<0.2" in req for req in requires)
    assert any(req.startswith("lightgbm") for req in requires)
    assert "[rorf]\nlightgbm = rorf_lightgbm" in entry_points

    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    run([python, "-m", "pip", "install", "--quiet", CORE_ROOT, wheel])
    report = json.loads(run([python, "-c", CHECK_SCRIPT], cwd=tmp_path))

    assert ["lightgbm", "rorf_lightgbm", "rorf-lightgbm"] in report["entry_points"]
    assert report["distribution"] == "rorf-lightgbm"
    assert report["failures"] == []
    assert Path(report["module"]).is_relative_to(environment)
    assert report["round_trip_equal"] is True
