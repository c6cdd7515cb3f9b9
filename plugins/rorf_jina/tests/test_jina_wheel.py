"""The built wheel installs into a clean environment and its entry point resolves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_wheel.sh"
ENABLE_ENV = "RORF_JINA_WHEEL_TEST"


@pytest.mark.skipif(
    os.environ.get(ENABLE_ENV) != "1",
    reason=f"installs packages into a new virtual environment; set {ENABLE_ENV}=1",
)
def test_wheel_installs_and_resolves_entry_point() -> None:
    result = subprocess.run(
        ["bash", str(SCRIPT), sys.executable], capture_output=True, text=True
    )

    errors = "\n".join(
        line for line in result.stderr.splitlines() if "is ignored" not in line
    )
    # pip repeats a warning per package about index locations this machine's
    # pip configuration lists but lacks; it is dropped above as noise.
    assert result.returncode == 0, result.stdout[-4000:] + errors[-4000:]
    assert "jina -> rorf_jina.embedder from rorf-jina" in result.stdout
