"""The plugin as RoRF finds it: entry point, registry and import cost."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import HIDDEN_SIZE, TOKEN_LIMIT, sentence
from rorf_core import get_embedder
from rorf_core.plugins import embedder_entries, plugin_failures

from rorf_jina import JinaEmbedder

HEAVY_MODULES = ("torch", "transformers")


def test_import_loads_neither_torch_nor_transformers() -> None:
    script = textwrap.dedent(
        """
        import json, sys
        import rorf_jina
        from rorf_core.plugins import embedder_entries
        embedder = embedder_entries()["jina"].factory(max_length=512)
        embedder.options()
        repr(embedder)
        print(json.dumps({name: name in sys.modules for name in sys.argv[1:]}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *HEAVY_MODULES],
        capture_output=True,
        text=True,
        check=True,
    )

    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == {name: False for name in HEAVY_MODULES}


def test_entry_point_lists_jina() -> None:
    entry = embedder_entries()["jina"]

    assert entry.distribution == "rorf-jina"
    assert entry.plugin == "jina"
    assert entry.factory is JinaEmbedder
    assert not [f for f in plugin_failures() if f.plugin == "jina"]


def test_get_embedder_builds_working_embedder(bert_dir: Path) -> None:
    embedder = get_embedder("jina", model=str(bert_dir), max_length=TOKEN_LIMIT)

    vectors = embedder.embed([sentence(3)])

    assert isinstance(embedder, JinaEmbedder)
    assert vectors.shape == (1, HIDDEN_SIZE)
