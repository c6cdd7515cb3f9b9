#!/usr/bin/env bash
# Build the rorf-jina wheel, install it into a fresh virtual environment with
# only its declared dependencies, and check there that the `rorf` entry point
# resolves and that the plugin's tests pass against the installed wheel.
#
# Usage: plugins/rorf_jina/scripts/check_wheel.sh [PYTHON]
#   PYTHON  an interpreter with the `build` package (default: python3). The
#           new environment is made with it but without its site-packages.
# Environment:
#   KEEP_WORKDIR=1  keep the temporary directory for inspection.
#
# torch is installed first as exactly torch==2.13.0, so that pip does not
# pick another torch build when it resolves the plugin's `torch>=2.1`.
# rorf-core is built from this checkout, because the plugin's range
# `rorf-core>=0.1,<0.2` must be met by the core in the same repository.
set -euo pipefail

python=${1:-python3}
plugin_dir=$(cd "$(dirname "$0")/.." && pwd)
repo_root=$(cd "$plugin_dir/../.." && pwd)
workdir=$(mktemp -d -t rorf-jina-wheel-XXXXXX)
if [[ "${KEEP_WORKDIR:-0}" != 1 ]]; then
    trap 'rm -rf "$workdir"' EXIT
fi

# setuptools leaves a build/ folder in each project it builds. Folders that
# this script creates are removed afterwards, so that no stale copy ends up in
# a later build.
build_wheel() {
    local project=$1 log=$2
    local created=0
    [[ -e "$project/build" ]] || created=1
    "$python" -m build --wheel --outdir "$workdir/dist" "$project" >"$log"
    if [[ $created == 1 ]]; then
        rm -rf "$project/build"
    fi
}

echo "== building wheels into $workdir/dist"
build_wheel "$repo_root" "$workdir/build-core.log"
build_wheel "$plugin_dir" "$workdir/build-jina.log"
ls "$workdir/dist"

echo "== creating a clean virtual environment"
"$python" -m venv "$workdir/venv"
venv_python="$workdir/venv/bin/python"
"$venv_python" -m pip install --quiet torch==2.13.0
"$venv_python" -m pip install --quiet "$workdir"/dist/rorf_core-*.whl
"$venv_python" -m pip install --quiet "$workdir"/dist/rorf_jina-*.whl
"$venv_python" -m pip check

echo "== resolving the entry point"
# Run outside the checkout, so that only the installed wheel can be imported.
cd "$workdir"
"$venv_python" - <<'PY'
import importlib.metadata
import sys

import rorf_jina
from rorf_core.plugins import embedder_entries, plugin_failures

if "site-packages" not in rorf_jina.__file__:
    sys.exit(f"rorf_jina was imported from {rorf_jina.__file__}, not the wheel")
entry = embedder_entries()["jina"]
if entry.distribution != "rorf-jina" or entry.factory is not rorf_jina.JinaEmbedder:
    sys.exit(f"unexpected registry entry for 'jina': {entry}")
if plugin_failures():
    sys.exit(f"plugins failed to load: {plugin_failures()}")
print("jina ->", entry.factory.__module__, "from", entry.distribution, entry.version)
print("torch", importlib.metadata.version("torch"),
      "transformers", importlib.metadata.version("transformers"))
PY

echo "== running the plugin's tests against the installed wheel"
"$venv_python" -m pip install --quiet "pytest>=7.4"
# The variable is unset so that the wheel test does not start this script again.
env -u RORF_JINA_WHEEL_TEST "$workdir/venv/bin/pytest" -q -p no:cacheprovider --rootdir "$plugin_dir" \
    "$plugin_dir/tests"
