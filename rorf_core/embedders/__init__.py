"""Embedder interface and shared helpers for embedder plugins."""

from rorf_core.embedders.base import Embedder, check_texts, iter_batches

__all__ = ["Embedder", "check_texts", "iter_batches"]
