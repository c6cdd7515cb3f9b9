"""Exception classes raised by RoRF.

Each class also subclasses the built-in exception it resembles, so code that
already catches ``KeyError``, ``ValueError`` or ``FileNotFoundError`` keeps
working.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "RorfError",
    "UnknownNameError",
    "PluginLoadError",
    "DatasetError",
    "RouterNotFoundError",
    "RouterFormatError",
    "UnsafeRouterError",
    "EmbeddingError",
    "MissingAPIKeyError",
    "InvalidInputError",
    "InvalidThresholdError",
    "InvalidConfigError",
]


class RorfError(Exception):
    """Base class of every error that RoRF raises on purpose."""


class UnknownNameError(RorfError, KeyError):
    """A registry has no embedder or scorer of the requested name."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.known = sorted(known)
        listed = ", ".join(self.known) or "none"
        super().__init__(
            f"unknown {kind} {name!r}; registered {kind}s: {listed}. "
            "Install the plugin that provides it or check `rorf plugins`."
        )

    def __str__(self) -> str:
        # KeyError.__str__ would wrap the message in quotes.
        return str(self.args[0])


class PluginLoadError(RorfError, ImportError):
    """A plugin failed to import or to register."""


class DatasetError(RorfError, ValueError):
    """A training or evaluation table is missing columns or contains invalid rows."""


class RouterNotFoundError(RorfError, FileNotFoundError):
    """A router directory, hub repository or one of its files is missing."""


class RouterFormatError(RorfError, ValueError):
    """A router directory exists but its content is invalid or unsupported."""


class UnsafeRouterError(RorfError, PermissionError):
    """Loading the router would unpickle code and the caller did not opt in."""


class EmbeddingError(RorfError, RuntimeError):
    """An embedder failed to produce vectors for a batch of texts."""


class MissingAPIKeyError(EmbeddingError):
    """An embedding provider needs an API key that is not set."""

    def __init__(self, provider: str, variable: str) -> None:
        self.provider = provider
        self.variable = variable
        super().__init__(
            f"{provider} needs an API key: set the {variable} environment "
            f"variable or pass api_key= to the {provider} embedder."
        )


class InvalidInputError(RorfError, ValueError):
    """A text in a batch cannot be embedded; ``index`` names its position."""

    def __init__(self, index: int, reason: str) -> None:
        self.index = index
        self.reason = reason
        super().__init__(f"text at index {index} is invalid: {reason}")


class InvalidThresholdError(RorfError, ValueError):
    """A routing threshold is not a number in [0, 1]."""


class InvalidConfigError(RorfError, ValueError):
    """A training setting is invalid or conflicts with another setting."""
