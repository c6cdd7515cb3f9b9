"""Plugin loading, registries and the `rorf plugins` command."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import pytest
from click.testing import CliRunner

from rorf_core import UnknownNameError, get_embedder, hookimpl, register_plugin, unregister_plugin
from rorf_core.cli import _add_commands, cli
from rorf_core.plugins import embedder_entries, plugin_failures, scorer_entries


def run_cli(*args: str) -> str:
    _add_commands()
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_builtin_scorers_come_from_core() -> None:
    entries = scorer_entries()
    assert entries["random-forest"].distribution == "rorf-core"
    assert entries["random-forest"].plugin == "rorf_core.builtins"
    assert entries["rf"] is entries["random-forest"]
    assert "extra-trees" in entries


def test_unknown_embedder_lists_registered_names() -> None:
    with pytest.raises(UnknownNameError) as caught:
        get_embedder("no-such-embedder")
    message = str(caught.value)
    assert "no-such-embedder" in message
    assert "wordllama" in message
    assert isinstance(caught.value, KeyError)


def test_third_party_plugin_listed_with_distribution() -> None:
    entries = embedder_entries()
    assert "hashing" in entries, "install tests/plugin_package (the test command does)"
    assert entries["hashing"].distribution == "rorf-hashing-test-plugin"
    assert entries["hashing"].version == "0.0.7"
    output = json.loads(run_cli("plugins", "--json"))
    names = {(row["kind"], row["name"]): row for row in output["registered"]}
    assert names[("embedder", "hashing")]["distribution"] == "rorf-hashing-test-plugin"
    assert names[("embedder", "wordllama")]["distribution"] == "rorf-wordllama"
    assert names[("scorer", "random-forest")]["distribution"] == "rorf-core"


def test_plugins_table_shows_versions() -> None:
    output = run_cli("plugins")
    hashing_line = next(line for line in output.splitlines() if line.split()[1:2] == ["hashing"])
    assert "rorf-hashing-test-plugin" in hashing_line
    assert "0.0.7" in hashing_line


class BrokenRegistration:
    @hookimpl
    def register_embedders(self, register: Callable[..., None]) -> None:
        raise RuntimeError("boom in register")


def test_failing_plugin_reported_and_others_load() -> None:
    name = register_plugin(BrokenRegistration(), name="broken-plugin")
    try:
        entries = embedder_entries()
        failures = {failure.plugin: failure for failure in plugin_failures()}
    finally:
        unregister_plugin(name)
    assert "wordllama" in entries
    assert "broken-plugin" in failures
    assert "boom in register" in failures["broken-plugin"].error


def test_entry_point_import_failure_reported(tmp_path, monkeypatch) -> None:
    # A real distribution whose entry point names a module that fails to
    # import, placed on sys.path of a fresh interpreter.
    dist = tmp_path / "rorf_broken-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rorf-broken\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[rorf]\nbroken = rorf_broken_module\n")
    (tmp_path / "rorf_broken_module.py").write_text("raise ImportError('missing dependency xyz')\n")
    code = (
        "import json; from rorf_core.plugins import embedder_entries, plugin_failures;"
        "e = embedder_entries();"
        "print(json.dumps({'names': sorted(e), 'failures': "
        "[[f.plugin, f.distribution, f.error] for f in plugin_failures()]}))"
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    report = json.loads(result.stdout)
    assert "wordllama" in report["names"]
    assert ["broken", "rorf-broken", "ImportError: missing dependency xyz"] in report["failures"]


def test_load_plugins_env_selects_none() -> None:
    code = "from rorf_core.plugins import embedder_entries, scorer_entries; print(sorted(embedder_entries()), sorted(scorer_entries()))"
    env = {**__import__("os").environ, "RORF_LOAD_PLUGINS": ""}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == (
        "[] ['extra-trees', 'extra-trees-regressor', 'random-forest', "
        "'random-forest-regressor', 'rf']"
    )


def test_runtime_plugin_name_must_be_unique(keyword_plugin) -> None:
    from rorf_core.errors import PluginLoadError

    with pytest.raises(PluginLoadError, match="already registered"):
        register_plugin(object(), name="keyword-test-plugin")


def test_import_core_skips_heavy_libraries() -> None:
    code = (
        "import sys, rorf_core, rorf_core.controller, rorf_core.plugins;"
        "rorf_core.plugins.embedder_entries();"
        "print([m for m in ('torch', 'transformers', 'voyageai', 'openai') if m in sys.modules])"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.endswith("_API_KEY")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "[]"


def test_batch_error_index_counts_whole_list() -> None:
    import numpy as np

    from rorf_core import Embedder, InvalidInputError

    class RejectsLong(Embedder):
        name = "rejects-long"
        batch_size = 2

        @property
        def dimension(self) -> int:
            return 1

        def embed_batch(self, texts: list[str]) -> np.ndarray:
            for index, text in enumerate(texts):
                if len(text) > 5:
                    raise InvalidInputError(index, "too long")
            return np.ones((len(texts), 1))

    with pytest.raises(InvalidInputError) as caught:
        RejectsLong("m").embed(["a", "b", "c", "far too long"])
    assert caught.value.index == 3
