"""The plugin author guide documents every hook specification."""

from __future__ import annotations

import inspect
from pathlib import Path

from rorf_core import hookspecs

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "plugin-guide.md"


def test_every_hook_has_a_section() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    names = hookspecs.hook_names()
    assert names, "no hook specifications found"
    for name in names:
        parameters = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"### {name}({parameters})" in text, f"docs/plugin-guide.md has no section for {name}"


def test_every_hook_has_a_docstring() -> None:
    for name in hookspecs.hook_names():
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert ":param register:" in doc, f"hook {name} lacks parameter docs"
