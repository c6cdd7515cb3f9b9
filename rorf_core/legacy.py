"""Legacy RoRF routers: a pickled scikit-learn forest in ``classifier.pkl``.

The pre-trained RoRF routers on the Hugging Face hub hold a pickled
``RandomForestClassifier`` over RoRF's four labels and a ``config.json``
written by RoRF's trainer (``embedding_provider``, ``llms`` and the forest
settings). Unpickling runs code from the file, so these routers load only
when the caller opts in with ``allow_pickle=True``. :func:`convert_legacy_router`
turns one into the safe format once, after which no opt-in is needed.

A legacy router does not record its embedder's model or dimension. They come
from :data:`LEGACY_EMBEDDERS`, keyed by the ``embedding_provider`` of
``config.json`` or, when that is missing, by the embedder part of the repo
name ``rorf-<embedder>-<model_a>-<model_b>``. This is the only place where a
router's identity is read from a name: the safe format stores it.
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import os
import pickle
import pickletools
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from rorf_core.embedders.base import Embedder
from rorf_core.errors import (
    EmbeddingError,
    RouterFormatError,
    RouterNotFoundError,
    UnknownNameError,
    UnsafeRouterError,
)
from rorf_core.labels import RORF_LABELS

logger = logging.getLogger(__name__)

__all__ = [
    "LEGACY_FILE",
    "LEGACY_CONFIG_FILE",
    "LEGACY_EMBEDDERS",
    "LegacyEmbedderSpec",
    "LegacyIdentity",
    "PickleLoadWarning",
    "UnavailableEmbedder",
    "convert_legacy_router",
    "legacy_identity",
    "load_legacy_router",
    "pickled_sklearn_versions",
    "read_legacy_estimator",
]

LEGACY_FILE = "classifier.pkl"
LEGACY_CONFIG_FILE = "config.json"


class PickleLoadWarning(UserWarning):
    """A legacy router is being unpickled, which runs code from its file."""


@attrs.frozen(kw_only=True)
class LegacyEmbedderSpec:
    """The embedder behind a legacy ``embedding_provider`` name."""

    registry_name: str
    model: str
    dimension: int
    options: dict[str, Any] = attrs.field(factory=dict)


#: Legacy embedder names and what they mean. The models are the defaults of
#: RoRF's own embedding classes; the dimensions are those models' output
#: lengths, which the pickled forests were fitted on. The options repeat how
#: RoRF embedded (jina's classification task, Voyage's "Cluster the text: "
#: prefix), so a converted router does not depend on a plugin's defaults.
LEGACY_EMBEDDERS: dict[str, LegacyEmbedderSpec] = {
    "jina": LegacyEmbedderSpec(
        registry_name="jina",
        model="jinaai/jina-embeddings-v3",
        dimension=1024,
        options={"task": "classification"},
    ),
    "voyage": LegacyEmbedderSpec(
        registry_name="voyage",
        model="voyage-large-2-instruct",
        dimension=1024,
        options={"instruction": "Cluster the text: "},
    ),
    "openai": LegacyEmbedderSpec(
        registry_name="openai", model="text-embedding-3-small", dimension=1536
    ),
    "wordllama": LegacyEmbedderSpec(
        registry_name="wordllama", model="l2_supercat", dimension=256
    ),
}

_REPO_NAME = re.compile(
    r"^rorf-(?P<embedder>[^-]+)-(?P<model_a>[^-]+)-(?P<model_b>[^-]+)$"
)


@attrs.frozen(kw_only=True)
class LegacyIdentity:
    """Embedder and model names of a legacy router, and where they were read."""

    embedder: str
    model_a: str
    model_b: str
    source: str
    config: dict[str, Any] = attrs.field(factory=dict)

    @property
    def spec(self) -> LegacyEmbedderSpec:
        return LEGACY_EMBEDDERS[self.embedder]


# Identity -------------------------------------------------------------------


def _read_config(directory: Path) -> dict[str, Any]:
    path = directory / LEGACY_CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        logger.warning("ignoring %s: it is not valid JSON (%s)", path, error)
        return {}
    if not isinstance(config, dict):
        logger.warning("ignoring %s: it does not contain a JSON object", path)
        return {}
    return config


def _parse_repo_name(name: str) -> dict[str, str] | None:
    # The last part of a repo id or of a local path, e.g. "rorf-jina-a-b".
    base = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    match = _REPO_NAME.match(base)
    return match.groupdict() if match else None


def _config_models(config: dict[str, Any]) -> tuple[str, str] | None:
    llms = config.get("llms")
    if (
        isinstance(llms, list)
        and len(llms) == 2
        and all(isinstance(m, str) for m in llms)
    ):
        return llms[0], llms[1]
    return None


def legacy_identity(directory: Path, name: str) -> LegacyIdentity:
    """Read the embedder and the two model names of a legacy router.

    ``config.json`` (``embedding_provider`` and ``llms``) wins; the repo or
    directory name ``rorf-<embedder>-<model_a>-<model_b>`` fills what it
    lacks.
    """
    config = _read_config(directory)
    parsed = _parse_repo_name(name) or {}
    embedder = config.get("embedding_provider") or parsed.get("embedder")
    models = _config_models(config) or (
        (parsed["model_a"], parsed["model_b"]) if parsed else None
    )
    if not isinstance(embedder, str) or models is None:
        raise RouterFormatError(
            f"legacy router {name!r}: cannot determine its embedder and models, as "
            f"{LEGACY_CONFIG_FILE} has no 'embedding_provider' and 'llms' and the "
            "name does not have the form rorf-<embedder>-<model_a>-<model_b>; add "
            f"those keys to {LEGACY_CONFIG_FILE} or rename the directory"
        )
    if embedder not in LEGACY_EMBEDDERS:
        known = ", ".join(sorted(LEGACY_EMBEDDERS))
        raise RouterFormatError(
            f"legacy router {name!r} names embedder {embedder!r}, which is not a "
            f"legacy RoRF embedder; known: {known}"
        )
    source = LEGACY_CONFIG_FILE if config.get("embedding_provider") else "the repo name"
    return LegacyIdentity(
        embedder=embedder,
        model_a=models[0],
        model_b=models[1],
        source=source,
        config=config,
    )


# Reading the pickle -----------------------------------------------------------

_STRING_OPCODES = frozenset(
    {
        "SHORT_BINUNICODE",
        "BINUNICODE",
        "BINUNICODE8",
        "UNICODE",
        "SHORT_BINSTRING",
        "BINSTRING",
        "STRING",
    }
)
_MEMO_GET_OPCODES = frozenset({"GET", "BINGET", "LONG_BINGET"})
_MEMO_PUT_OPCODES = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
# Opcodes that leave the top of the stack as it was.
_STACK_NEUTRAL_OPCODES = frozenset({"PROTO", "FRAME", "MEMOIZE", *_MEMO_PUT_OPCODES})


def pickled_sklearn_versions(data: bytes) -> list[str]:
    """Return the scikit-learn versions recorded in a pickle, without loading it.

    scikit-learn estimators pickle their state with a ``_sklearn_version``
    key. This walks the opcodes with :mod:`pickletools` and returns the
    string pushed right after each such key (through the memo, too), in
    order and without repeats. It returns what it found before a corrupt
    opcode, so a truncated file still reports its writer.
    """
    memo: dict[int, Any] = {}
    top: Any = None
    after_key = False
    versions: list[str] = []
    try:
        for opcode, argument, _ in pickletools.genops(data):
            name = opcode.name
            if name == "MEMOIZE":
                memo[len(memo)] = top
            elif name in _MEMO_PUT_OPCODES:
                memo[int(argument)] = top
            if name in _STACK_NEUTRAL_OPCODES:
                continue
            if name in _STRING_OPCODES:
                top = (
                    argument.decode("latin-1")
                    if isinstance(argument, bytes)
                    else argument
                )
            elif name in _MEMO_GET_OPCODES:
                top = memo.get(int(argument))
            else:
                top = None
            if after_key and isinstance(top, str) and top not in versions:
                versions.append(top)
            after_key = top == "_sklearn_version"
    except ValueError as error:  # pickletools' message for a corrupt opcode
        logger.debug("stopped reading pickle opcodes: %s", error)
    return versions


# The globals that a pickled scikit-learn forest needs. Unpickling anything
# else (os.system, builtins.eval, ...) raises before it is called. This
# narrows what a hostile file can do but does not make unpickling safe,
# which is why the opt-in stays.
_ALLOWED_MODULE_PREFIXES = ("sklearn.ensemble.", "sklearn.tree.", "numpy.random.")
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("copyreg", "_reconstructor"),
        ("builtins", "object"),
        ("_codecs", "encode"),
    }
)


class _ForestUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        allowed = (module, name) in _ALLOWED_GLOBALS or module.startswith(
            _ALLOWED_MODULE_PREFIXES
        )
        if not allowed:
            raise UnsafeRouterError(
                f"{LEGACY_FILE} imports {module}.{name}, which a pickled scikit-learn "
                "forest does not use (it needs sklearn.ensemble, sklearn.tree and "
                "numpy arrays only); the file was not loaded"
            )
        return super().find_class(module, name)


def _installed_sklearn() -> str:
    import sklearn

    return str(sklearn.__version__)


def _version_error(
    path: Path, written_by: list[str], error: BaseException
) -> RouterFormatError:
    installed = _installed_sklearn()
    if written_by and written_by[0] != installed:
        writer = written_by[0]
        return RouterFormatError(
            f"{str(path)!r} was written by scikit-learn {writer} and failed to load "
            f"with the installed scikit-learn {installed} ({type(error).__name__}: "
            f"{error}). In a separate virtual environment, install "
            f"scikit-learn=={writer} with rorf-core and run `rorf convert SRC "
            "--out DIR --allow-pickle` once; the converted router loads with any "
            "scikit-learn"
        )
    writer = (
        f"scikit-learn {written_by[0]}" if written_by else "an unknown scikit-learn"
    )
    return RouterFormatError(
        f"{str(path)!r} is not a loadable scikit-learn forest pickle (written by "
        f"{writer}; {type(error).__name__}: {error}); download the router again"
    )


def read_legacy_estimator(path: Path) -> tuple[Any, list[str]]:
    """Unpickle a legacy ``classifier.pkl`` and return it with its writer versions.

    Only call this after the caller opted in: unpickling runs code from the
    file, even with the allowed globals restricted.
    """
    data = path.read_bytes()
    written_by = pickled_sklearn_versions(data)
    installed = _installed_sklearn()
    logger.info(
        "%s was written by scikit-learn %s; installed: %s",
        path,
        ", ".join(written_by) or "unknown",
        installed,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            estimator = _ForestUnpickler(io.BytesIO(data)).load()
        except UnsafeRouterError:
            raise
        except Exception as error:  # any failure inside foreign pickle code
            raise _version_error(path, written_by, error) from error
    for warning in caught:
        # sklearn's InconsistentVersionWarning means the versions differ. The
        # forest loaded anyway, and the checks below decide whether it is usable.
        logger.warning("while unpickling %s: %s", path, warning.message)
    return estimator, written_by


def _scorer_for(estimator: Any, path: Path) -> Any:
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

    from rorf_core.forest.sklearn_forest import ExtraTreesScorer, RandomForestScorer

    if isinstance(estimator, RandomForestClassifier):
        scorer_class: Any = RandomForestScorer
    elif isinstance(estimator, ExtraTreesClassifier):
        scorer_class = ExtraTreesScorer
    else:
        raise RouterFormatError(
            f"{str(path)!r} contains a {type(estimator).__module__}."
            f"{type(estimator).__name__}, not a RandomForestClassifier; it is not a "
            "RoRF router"
        )
    try:
        return scorer_class.from_estimator(estimator)
    except (AttributeError, TypeError, ValueError) as error:
        raise RouterFormatError(
            f"{str(path)!r}: the unpickled forest cannot be compiled "
            f"({type(error).__name__}: {error}); it may come from a scikit-learn "
            f"release other than the installed {_installed_sklearn()}"
        ) from error


def _check_forest(scorer: Any, identity: LegacyIdentity, path: Path) -> None:
    known = set(RORF_LABELS.values())
    classes = [int(label) for label in scorer.classes_]
    if not set(classes) <= known or len(classes) < 2:
        raise RouterFormatError(
            f"{str(path)!r}: the forest's classes are {classes}, but a RoRF router "
            f"has two to four of RoRF's labels {sorted(known)}"
        )
    spec = identity.spec
    if scorer.n_features_in_ != spec.dimension:
        raise RouterFormatError(
            f"{str(path)!r}: the forest takes {scorer.n_features_in_} features, but "
            f"embedder {identity.embedder!r} ({spec.model}, read from "
            f"{identity.source}) returns {spec.dimension}; the router's "
            f"{LEGACY_CONFIG_FILE} or name names the wrong embedder"
        )


# The embedder -------------------------------------------------------------------


class UnavailableEmbedder(Embedder):
    """Stand-in for an embedder whose plugin is not installed.

    It carries the name, model, options and dimension that a converted
    router saves, and raises :class:`EmbeddingError` when asked to embed.
    """

    def __init__(
        self,
        name: str,
        model: str,
        dimension: int,
        options: dict[str, Any],
        reason: str,
    ) -> None:
        super().__init__(model)
        self.name = name  # type: ignore[misc]  # per instance, not per class
        self._dimension = dimension
        self._options = dict(options)
        self.reason = reason

    @property
    def dimension(self) -> int:
        return self._dimension

    def options(self) -> dict[str, Any]:
        return dict(self._options)

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        raise EmbeddingError(
            f"embedder {self.name!r} is not installed ({self.reason}); install its "
            f"plugin (for example pip install rorf-{self.name}) to route with this "
            "router"
        )


def _legacy_embedder(
    identity: LegacyIdentity, options: dict[str, Any], require_embedder: bool
) -> Embedder:
    from rorf_core import plugins

    spec = identity.spec
    merged = {**spec.options, **options}
    try:
        return plugins.get_embedder(spec.registry_name, model=spec.model, **merged)
    except UnknownNameError as error:
        if require_embedder:
            raise
        logger.info(
            "embedder %r is not installed; converting without it", spec.registry_name
        )
        return UnavailableEmbedder(
            spec.registry_name, spec.model, spec.dimension, merged, str(error)
        )


# Loading and conversion -----------------------------------------------------------


def _opt_in_error(name: str, path: Path) -> UnsafeRouterError:
    return UnsafeRouterError(
        f"router {name!r} is a legacy RoRF router: {str(path)!r} is a pickle, and "
        "unpickling runs code from the file. If you trust its source, pass "
        "allow_pickle=True (on the command line: --allow-pickle) to load it, or "
        f"convert it once with `rorf convert {name} --out DIR --allow-pickle` and "
        "load DIR, which needs no opt-in"
    )


def _legacy_training(
    identity: LegacyIdentity, name: str, written_by: list[str]
) -> dict[str, Any]:
    from rorf_core import __version__
    from rorf_core.hub import looks_like_repo_id

    # A local path would put the converting user's directories into a file
    # that may be pushed to the hub, so only its last part is kept.
    recorded_name = name if looks_like_repo_id(name) else Path(name).name
    return {
        "source": "legacy RoRF classifier.pkl",
        "legacy_name": recorded_name,
        "identity_source": identity.source,
        "legacy_config": identity.config,
        "pickled_with_sklearn": written_by[0] if written_by else None,
        "loaded_with_sklearn": _installed_sklearn(),
        "rorf_core_version": __version__,
    }


def load_legacy_router(
    directory: Path,
    *,
    name: str,
    allow_pickle: bool,
    embedder_options: dict[str, Any] | None = None,
    require_embedder: bool = True,
) -> Any:
    """Return a Router for a legacy directory, or None without ``classifier.pkl``.

    :param name: the name the caller asked for (repo id or path); its last
        part may name the embedder and models.
    :param allow_pickle: the caller's opt-in to unpickling.
    :param require_embedder: when False, a missing embedder plugin gives an
        :class:`UnavailableEmbedder` instead of an error, so the router can
        still be converted.
    :raises UnsafeRouterError: without the opt-in.
    :raises RouterFormatError: the pickle, config or name is not a RoRF router.
    """
    path = Path(directory) / LEGACY_FILE
    if not path.is_file():
        return None
    if not allow_pickle:
        raise _opt_in_error(name, path)
    message = (
        f"unpickling legacy router {name!r} from {path}: this runs code from the "
        "file, so only load files you trust; `rorf convert` saves it in the safe "
        "format once"
    )
    warnings.warn(message, PickleLoadWarning, stacklevel=2)
    logger.warning("%s", message)
    from rorf_core.router import DEFAULT_DECISION_RULE, DEFAULT_LABEL_SCHEME, Router

    identity = legacy_identity(Path(directory), name)
    estimator, written_by = read_legacy_estimator(path)
    scorer = _scorer_for(estimator, path)
    _check_forest(scorer, identity, path)
    embedder = _legacy_embedder(identity, embedder_options or {}, require_embedder)
    return Router(
        embedder=embedder,
        scorer=scorer,
        model_a=identity.model_a,
        model_b=identity.model_b,
        label_scheme=DEFAULT_LABEL_SCHEME,
        decision_rule=DEFAULT_DECISION_RULE,
        training=_legacy_training(identity, name, written_by),
        embedder_dimension=identity.spec.dimension,
    )


#: Rows of the self-check that compares the converted forest with the pickle.
CHECK_ROWS = 512
CHECK_TOLERANCE = 1e-6


def _check_rows(estimator: Any, rows: int, seed: int = 0) -> np.ndarray:
    # Sample each feature around the thresholds the forest splits it on, so
    # that the rows take many different paths through the trees.
    n_features = int(estimator.n_features_in_)
    thresholds = np.concatenate(
        [
            tree.tree_.threshold[tree.tree_.feature >= 0]
            for tree in estimator.estimators_
        ]
    )
    if thresholds.size == 0:
        low, high = -1.0, 1.0
    else:
        low, high = float(thresholds.min()), float(thresholds.max())
    spread = max(high - low, 1e-6)
    rng = np.random.default_rng(seed)
    sample = rng.uniform(low - 0.1 * spread, high + 0.1 * spread, (rows, n_features))
    return sample.astype(np.float32)


def _verify_conversion(router: Any, out: Path) -> float:
    from rorf_core import format as router_format
    from rorf_core import plugins

    metadata, arrays = router_format.read_router_dir(out)
    scorer_meta = metadata["scorer"]
    scorer_class = plugins.get_scorer_class(scorer_meta["name"])
    reloaded = scorer_class.from_state(
        scorer_meta.get("params", {}), scorer_meta["state"], arrays
    )
    rows = _check_rows(router.scorer.estimator_, CHECK_ROWS)
    expected = router.scorer.estimator_.predict_proba(rows)
    difference = float(np.max(np.abs(reloaded.predict_proba(rows) - expected)))
    if difference > CHECK_TOLERANCE:
        shutil.rmtree(out, ignore_errors=True)
        raise RouterFormatError(
            f"the router converted to {str(out)!r} differs from the pickle by "
            f"{difference:.3g} in a class probability (limit {CHECK_TOLERANCE}), so "
            "it was removed; report this with the scikit-learn version"
        )
    return difference


def convert_legacy_router(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    allow_pickle: bool = False,
    revision: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert a legacy router (local directory or hub repo id) to the safe format.

    The embedder plugin need not be installed: conversion never embeds. The
    converted forest is checked against the pickle on :data:`CHECK_ROWS`
    sampled rows before this returns.

    :raises UnsafeRouterError: without ``allow_pickle``.
    :raises RouterFormatError: ``source`` is already in the safe format, or
        ``out`` exists and ``overwrite`` is False.
    """
    from rorf_core import format as router_format
    from rorf_core.hub import resolve_router

    name = os.fspath(source)
    target = Path(out)
    directory = resolve_router(source, revision=revision)
    if (directory / router_format.METADATA_FILE).is_file():
        raise RouterFormatError(
            f"router {name!r} is already in the safe format "
            f"({router_format.METADATA_FILE} exists); there is nothing to convert"
        )
    if target.exists() and not overwrite:
        raise RouterFormatError(
            f"output {str(target)!r} already exists; pass overwrite=True (--overwrite) "
            "to replace it"
        )
    router = load_legacy_router(
        directory, name=name, allow_pickle=allow_pickle, require_embedder=False
    )
    if router is None:
        raise RouterNotFoundError(
            f"router {name!r} ({str(directory)!r}) has neither "
            f"{router_format.METADATA_FILE} nor {LEGACY_FILE}; it is not a router"
        )
    router.training = {
        **router.training,
        "converted": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "revision": revision,
    }
    router.save_pretrained(target)
    difference = _verify_conversion(router, target)
    logger.info(
        "converted %s to %s (largest probability difference %.3g)",
        name,
        target,
        difference,
    )
    return target
