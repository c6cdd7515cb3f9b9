"""``rorf serve``: an OpenAI-compatible server that routes chat completions."""

from __future__ import annotations

import ipaddress
import logging
import os
from typing import Any

import click

from rorf_core.serving.conversation import ROUTE_ON_CHOICES

logger = logging.getLogger(__name__)

_MISSING_EXTRA = (
    "rorf serve needs the serve extra: pip install 'rorf-core[serve]' "
    "(missing module {name!r})"
)


def parse_model_option(value: str, option: str) -> tuple[str, str]:
    """Split ``NAME=BASE_URL`` into the model name and the base URL."""
    name, sep, base_url = value.partition("=")
    if not sep or not name or not base_url:
        raise click.BadParameter(
            f"expected NAME=BASE_URL such as gpt-4o=https://api.openai.com/v1, "
            f"got {value!r}",
            param_hint=option,
        )
    return name, base_url


def read_key_env(variable: str | None, option: str) -> str | None:
    """Return the value of environment variable ``variable``, if one is named."""
    if variable is None:
        return None
    value = os.environ.get(variable, "")
    if not value:
        raise click.BadParameter(
            f"environment variable {variable} is unset or empty; export the key first",
            param_hint=option,
        )
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_app(options: dict[str, Any]) -> Any:
    """Build the Starlette app from the parsed command-line options."""
    from rorf_core.cli.route import calibrated_threshold, default_router
    from rorf_core.controller import Controller
    from rorf_core.router import check_threshold
    from rorf_core.serving.app import ServeSettings, create_app
    from rorf_core.serving.upstream import Upstream

    name_a, url_a = parse_model_option(options["model_a"], "--model-a")
    name_b, url_b = parse_model_option(options["model_b"], "--model-b")
    router = options["router"] or default_router()
    controller = Controller(
        router, model_a=name_a, model_b=name_b, allow_pickle=options["allow_pickle"]
    )
    threshold = options["threshold"]
    if threshold is None:
        threshold = calibrated_threshold(controller.router)
    controller.threshold = check_threshold(threshold)
    timeout = options["upstream_timeout_s"]
    try:
        upstreams = {
            name_a: Upstream(
                base_url=url_a,
                api_key_env=options["upstream_key_a_env"],
                timeout_s=timeout,
            ),
            name_b: Upstream(
                base_url=url_b,
                api_key_env=options["upstream_key_b_env"],
                timeout_s=timeout,
            ),
        }
        settings = ServeSettings(
            api_key=read_key_env(options["api_key_env"], "--api-key-env"),
            route_on=options["route_on"],
            log_prompts=options["log_prompts"],
            max_body_bytes=options["max_body_bytes"],
            max_batch=options["max_batch"],
            batch_wait_ms=options["batch_wait_ms"],
            embed_timeout_s=options["embed_timeout_s"],
            max_upstream_connections=options["max_upstream_connections"],
        )
        return create_app(controller, upstreams, settings)
    except ValueError as error:
        raise click.UsageError(str(error)) from None


@click.command()
@click.option(
    "--router",
    help="Router directory or hub repo id "
    "(default: the example router of rorf-wordllama).",
)
@click.option(
    "--threshold",
    type=float,
    help="Send a request to model A when its win rate is at least this, in "
    "[0, 1]. Default: the router's calibrated threshold for 50% of calls to A. "
    "A request picks another with model 'rorf-<threshold>'.",
)
@click.option(
    "--model-a",
    required=True,
    metavar="NAME=BASE_URL",
    help="Model A's name, sent upstream, and its OpenAI-compatible base URL.",
)
@click.option(
    "--model-b",
    required=True,
    metavar="NAME=BASE_URL",
    help="Model B's name and base URL.",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on."
)
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on.",
)
@click.option(
    "--api-key-env",
    metavar="VAR",
    help="Environment variable holding the key clients must send as "
    "'Authorization: Bearer KEY'. Without it the server admits every request.",
)
@click.option(
    "--upstream-key-a-env",
    metavar="VAR",
    help="Environment variable holding the API key sent to model A's upstream.",
)
@click.option(
    "--upstream-key-b-env",
    metavar="VAR",
    help="Environment variable holding the API key sent to model B's upstream.",
)
@click.option(
    "--route-on",
    type=click.Choice(ROUTE_ON_CHOICES),
    default="last-user",
    show_default=True,
    help="Route on the last user message or on the whole conversation.",
)
@click.option(
    "--log-prompts", is_flag=True, help="Also log the text each request was routed on."
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1),
    default=1_048_576,
    show_default=True,
    help="Requests with a larger body get HTTP 413.",
)
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Most prompts embedded in one call.",
)
@click.option(
    "--batch-wait-ms",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Milliseconds the first prompt of a batch waits for others.",
)
@click.option(
    "--embed-timeout-s",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds a request waits for its routing score before HTTP 503.",
)
@click.option(
    "--upstream-timeout-s",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds to wait for an upstream's response (for streams: its "
    "headers, then each chunk) before HTTP 504.",
)
@click.option(
    "--max-upstream-connections",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Most open connections to each upstream; more concurrent requests "
    "wait for a free one.",
)
@click.option(
    "--allow-pickle",
    is_flag=True,
    help="Allow a legacy pickled router; unpickling runs code from the file.",
)
def serve(**options: Any) -> None:
    """Serve an OpenAI-compatible API that routes chat completions to model A or B.

    Clients call POST /v1/chat/completions with model 'rorf' (or
    'rorf-0.3' for threshold 0.3); GET /v1/models and GET /health are
    also served.
    """
    try:
        import uvicorn

        app = build_app(options)
    except ModuleNotFoundError as error:
        raise click.ClickException(_MISSING_EXTRA.format(name=error.name)) from None
    # Routing decisions are the server's output, so they log at INFO even
    # without -v; the handler comes from the rorf command group.
    serving_logger = logging.getLogger("rorf_core.serving")
    if serving_logger.getEffectiveLevel() > logging.INFO:
        serving_logger.setLevel(logging.INFO)
    if options["api_key_env"] is None and not _is_loopback(options["host"]):
        logger.warning(
            "serving on %s without --api-key-env: anyone who can reach the port "
            "can send requests to the upstreams",
            options["host"],
        )
    uvicorn.run(app, host=options["host"], port=options["port"], log_level="info")
