"""OpenAI wire-format pieces shared by the server and the Python client.

Nothing here imports a web framework or an HTTP client, so the client side
(``rorf_core.chat``) can use these rules without the server's dependencies.
"""

from __future__ import annotations

import re
from typing import Any

from rorf_core.errors import RorfError
from rorf_core.router import check_threshold

__all__ = [
    "ROUTER_MODEL",
    "InvalidRequestError",
    "APIError",
    "error_body",
    "threshold_from_model",
]

#: The model name a request uses to ask for routing at the default threshold.
ROUTER_MODEL = "rorf"

_MODEL_PATTERN = re.compile(r"rorf(?:-(?P<threshold>[0-9]+(?:\.[0-9]+)?|\.[0-9]+))?")


class InvalidRequestError(RorfError, ValueError):
    """A chat completion request cannot be routed; ``param`` names the bad field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class APIError(Exception):
    """An error the server returns as an OpenAI-style JSON body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    @classmethod
    def invalid_request(cls, error: InvalidRequestError) -> APIError:
        """Return the 400 error for an :class:`InvalidRequestError`."""
        return cls(
            400,
            str(error),
            type="invalid_request_error",
            param=error.param,
            code="invalid_value",
        )

    def body(self) -> dict[str, Any]:
        """Return the JSON body, shaped like the OpenAI API's errors."""
        return error_body(self.message, self.type, self.param, self.code)


def error_body(
    message: str, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """Return ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def threshold_from_model(model: object, default: float) -> float:
    """Return the threshold that the request's model name selects.

    ``rorf`` selects ``default``, and ``rorf-<threshold>`` (for example
    ``rorf-0.3``) selects that threshold, which must lie in [0, 1].

    :raises InvalidRequestError: the name is missing or has another form.
    """
    if not isinstance(model, str):
        raise InvalidRequestError(
            f"model must be the string {ROUTER_MODEL!r} or 'rorf-<threshold>', "
            f"got {model!r}",
            param="model",
        )
    match = _MODEL_PATTERN.fullmatch(model)
    if match is None:
        raise InvalidRequestError(
            f"invalid model {model!r}: use {ROUTER_MODEL!r} for the server's "
            "threshold or 'rorf-<threshold>' with a threshold in [0, 1], "
            "for example 'rorf-0.3'",
            param="model",
        )
    if match["threshold"] is None:
        return default
    try:
        return check_threshold(float(match["threshold"]))
    except ValueError as error:
        raise InvalidRequestError(
            f"invalid model {model!r}: {error}", param="model"
        ) from None
