"""Thresholds that send a chosen share of prompts to model A."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

if TYPE_CHECKING:
    from rorf_core.cache import EmbeddingCache
    from rorf_core.router import Router

logger = logging.getLogger(__name__)

__all__ = [
    "Calibration",
    "ShareNotReachedWarning",
    "threshold_for_share",
    "calibration_table",
    "calibrate",
    "cached_win_rates",
]

#: How far the reached share may be from the requested one before a warning.
SHARE_TOLERANCE = 0.01
CACHE_DIR_NAME = "calibration-cache"


class ShareNotReachedWarning(UserWarning):
    """The requested share of calls to model A cannot be reached on this data."""


@attrs.frozen(kw_only=True)
class Calibration:
    """A threshold with the share it was computed for and the share it reaches."""

    threshold: float
    requested_share: float
    reached_share: float
    dataset: str
    rows: int


def check_share(share: float) -> float:
    """Return ``share`` as a float, raising unless it lies in [0, 1]."""
    value = float(share)
    if not 0.0 <= value <= 1.0:
        raise ValueError(
            f"the share of calls to model A must be in [0, 1], got {share!r} "
            "(0.5 means half the calls go to model A)"
        )
    return value


def threshold_for_share(scores: np.ndarray, share: float) -> tuple[float, float]:
    """Return ``(threshold, reached_share)`` that sends ``share`` of ``scores`` to A.

    A prompt goes to model A when its score is at least the threshold. The
    threshold is placed midway between the last score sent to A and the
    next one, so that new prompts close to the boundary split evenly. Ties
    at the boundary all go the same way, so the reached share can differ
    from the requested one; the caller decides whether to warn.
    """
    share = check_share(share)
    ordered = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    if ordered.size == 0:
        raise ValueError("cannot calibrate on zero prompts")
    count = int(round(share * ordered.size))
    if count == 0:
        threshold = float(np.nextafter(ordered[0], np.inf))
    elif count == ordered.size:
        threshold = float(ordered[-1])
    else:
        threshold = float((ordered[count - 1] + ordered[count]) / 2)
        if threshold <= ordered[count]:  # equal neighbours: no midpoint
            threshold = float(ordered[count - 1])
    threshold = min(max(threshold, 0.0), 1.0)
    reached = float(np.mean(ordered >= threshold))
    return threshold, reached


def calibration_table(scores: np.ndarray) -> list[dict[str, float]]:
    """Return the threshold for each whole percent of calls to model A."""
    table = []
    for percent in range(101):
        threshold, reached = threshold_for_share(scores, percent / 100)
        table.append({"percent": percent, "threshold": threshold, "reached": reached})
    return table


def _dataset_fingerprint(dataset: str, router_dir: Path, prompts: list[str]) -> str:
    digest = hashlib.sha256()
    digest.update(str(router_dir.resolve()).encode())
    for path in sorted(router_dir.glob("*")):
        if path.is_file():
            digest.update(f"{path.name}:{path.stat().st_mtime_ns}".encode())
    digest.update(dataset.encode())
    for prompt in prompts:
        digest.update(hashlib.sha256(prompt.encode()).digest())
    return digest.hexdigest()[:32]


def cached_win_rates(
    router: Router,
    router_dir: Path,
    dataset: str,
    prompts: list[str],
    cache: EmbeddingCache | None = None,
) -> np.ndarray:
    """Return the router's scores on ``prompts``, stored beside the router.

    The scores are kept in ``<router>/calibration-cache/<key>.npy``, keyed by
    the router files and the prompts, so asking for another share on the
    same dataset embeds nothing.
    """
    cache_dir = router_dir / CACHE_DIR_NAME
    key = _dataset_fingerprint(dataset, router_dir, prompts)
    path = cache_dir / f"{key}.npy"
    if path.is_file():
        scores = np.load(path, allow_pickle=False)
        if scores.shape == (len(prompts),):
            logger.info("read %d cached win rates from %s", len(prompts), path)
            return scores
    scores = router.win_rate(prompts, cache=cache, progress=True)
    try:
        cache_dir.mkdir(exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=cache_dir, suffix=".npy.tmp")
        with os.fdopen(handle, "wb") as file:
            np.save(file, scores, allow_pickle=False)
        os.replace(temp, path)
    except OSError as error:  # a read-only router still calibrates
        logger.warning("could not cache win rates in %s: %s", cache_dir, error)
    return scores


def calibrate(
    router: str | os.PathLike[str],
    dataset: str,
    share: float,
    *,
    cache: EmbeddingCache | None = None,
    drop_invalid: bool = False,
) -> Calibration:
    """Return the threshold that sends ``share`` of ``dataset``'s prompts to A.

    Warns with :class:`ShareNotReachedWarning` when ties make the reached
    share differ from the requested one by more than one percentage point.
    """
    from rorf_core.data import load_prompts
    from rorf_core.hub import resolve_router
    from rorf_core.router import Router

    share = check_share(share)
    router_dir = resolve_router(router)
    loaded = Router.from_pretrained(router_dir)
    prompts = load_prompts(dataset, drop_invalid=drop_invalid)
    scores = cached_win_rates(loaded, router_dir, dataset, prompts, cache)
    threshold, reached = threshold_for_share(scores, share)
    if abs(reached - share) > SHARE_TOLERANCE:
        warnings.warn(
            f"share {share:.2%} of calls to model A cannot be reached on {dataset!r}: "
            f"tied win rates make the nearest reachable share {reached:.2%} "
            f"(threshold {threshold:.6f})",
            ShareNotReachedWarning,
            stacklevel=2,
        )
    return Calibration(
        threshold=threshold,
        requested_share=share,
        reached_share=reached,
        dataset=dataset,
        rows=len(prompts),
    )


def calibration_summary(calibration: Calibration) -> dict[str, Any]:
    """Return the calibration as a JSON-ready dict."""
    return attrs.asdict(calibration)


