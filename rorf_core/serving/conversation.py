"""The routing rule: which text of a chat conversation the router scores.

``last-user`` (the default) scores the text of the last message whose role
is ``user``. The routers are trained on single prompts, and in a multi-turn
chat the last user turn is the request that the next answer must serve.
Earlier turns, tool results and system prompts would pull the score towards
text the router never saw in training.

``conversation`` scores the text of every message, in order, joined with
blank lines, whatever its role. Use it when the difficulty of a request
depends on the turns before it.

Content may be a string or a list of parts. Text parts (``{"type": "text",
"text": ...}``) are joined with newlines; image, audio, file and refusal
parts carry no text to route on and are skipped. Content ``None`` (an
assistant turn that only calls tools) contributes no text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rorf_core.serving.protocol import InvalidRequestError

__all__ = ["ROUTE_ON_CHOICES", "message_text", "routing_text"]

ROUTE_ON_CHOICES = ("last-user", "conversation")


def message_text(message: object, index: int) -> str:
    """Return the text of message ``index``: string content or its text parts."""
    if not isinstance(message, dict):
        raise InvalidRequestError(
            f"messages[{index}] must be an object, got {type(message).__name__}",
            param=f"messages[{index}]",
        )
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return _text_of_parts(content, index)
    raise InvalidRequestError(
        f"messages[{index}].content must be a string, a list of parts or null, "
        f"got {type(content).__name__}",
        param=f"messages[{index}].content",
    )


def _text_of_parts(parts: list[Any], index: int) -> str:
    texts = []
    for number, part in enumerate(parts):
        if not isinstance(part, dict):
            raise InvalidRequestError(
                f"messages[{index}].content[{number}] must be an object, "
                f"got {type(part).__name__}",
                param=f"messages[{index}].content[{number}]",
            )
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
    return "\n".join(texts)


def _check_messages(messages: object) -> Sequence[Any]:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError(
            "messages must be a non-empty list of message objects", param="messages"
        )
    return messages


def routing_text(messages: object, route_on: str = "last-user") -> str:
    """Return the text the router scores for ``messages`` under ``route_on``.

    :raises InvalidRequestError: the messages are malformed, there is no user
        message (``last-user``), or the text to route on is empty or only
        whitespace. It is raised before anything is embedded.
    """
    if route_on not in ROUTE_ON_CHOICES:
        raise ValueError(
            f"route_on must be one of {', '.join(ROUTE_ON_CHOICES)}, got {route_on!r}"
        )
    checked = _check_messages(messages)
    if route_on == "conversation":
        texts = [message_text(message, i) for i, message in enumerate(checked)]
        text = "\n\n".join(part for part in texts if part.strip())
        where = "the conversation"
    else:
        index = _last_user_index(checked)
        text = message_text(checked[index], index)
        where = f"the last user message (messages[{index}])"
    if not text.strip():
        raise InvalidRequestError(
            f"{where} has no text to route on: it is empty or only whitespace",
            param="messages",
        )
    return text


def _last_user_index(messages: Sequence[Any]) -> int:
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if isinstance(message, dict) and message.get("role") == "user":
            return index
    raise InvalidRequestError(
        "messages has no message with role 'user' to route on; add one, or "
        "route on the whole conversation (route_on='conversation')",
        param="messages",
    )
