"""The rorf-voyage wheel installs into a new virtual environment and registers."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from conftest import ORIGINAL_ENVIRON

PLUGIN_DIR = Path(__file__).resolve().parents[1]
CORE_DIR = PLUGIN_DIR.parents[1]
DISTRIBUTION = "rorf-voyage"
ENTRY_POINT = "voyage"

pytestmark = [
    pytest.mark.packaging,
    pytest.mark.skipif(
        os.environ.get("RORF_SKIP_PACKAGING") == "1",
        reason="RORF_SKIP_PACKAGING=1 skips the wheel builds",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("build") is None,
        reason="the 'build' package is missing",
    ),
]

CHECK = f"""
import importlib.metadata, sys
(entry_point,) = [
    e for e in importlib.metadata.entry_points(group="rorf") if e.name == "{ENTRY_POINT}"
]
module = entry_point.load()
from rorf_core.plugins import embedder_entries, plugin_failures
entry = embedder_entries()["{ENTRY_POINT}"]
assert not plugin_failures(), plugin_failures()
print(entry.distribution, entry.factory.__module__)
"""


def _run(command: list[str], **options: object) -> subprocess.CompletedProcess[str]:
    # The test session points proxies at a closed port; pip needs the real ones.
    result = subprocess.run(
        command,
        check=False,
        capture_output=True,
        text=True,
        env=ORIGINAL_ENVIRON,
        **options,
    )
    assert result.returncode == 0, (
        f"{command[:4]} failed:\n{result.stdout}\n{result.stderr}"
    )
    return result


def test_wheel_installs_and_registers(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    for source in (CORE_DIR, PLUGIN_DIR):
        _run(
            [
                sys.executable,
                "-m",
                "build",
                "--wheel",
                "--outdir",
                str(wheels),
                str(source),
            ]
        )
    built = sorted(path.name for path in wheels.glob("*.whl"))
    assert any(name.startswith("rorf_core-") for name in built)
    assert any(name.startswith(DISTRIBUTION.replace("-", "_") + "-") for name in built)

    environment = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(environment)
    python = str(environment / "bin" / "python")
    _run([python, "-m", "pip", "install", "--quiet", *map(str, wheels.glob("*.whl"))])
    _run([python, "-m", "pip", "check"])
    result = _run([python, "-c", CHECK], cwd=tmp_path)
    assert result.stdout.split() == [DISTRIBUTION, "rorf_voyage.embedder"]
