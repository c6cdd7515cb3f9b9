"""The ``rorf`` command."""

from __future__ import annotations

import logging
import sys

import click

from rorf_core.errors import RorfError

__all__ = ["main", "cli"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="Log more: -v for INFO, -vv for DEBUG.")
@click.version_option(package_name="rorf-core", prog_name="rorf")
def cli(verbose: int) -> None:
    """Train, calibrate, evaluate and serve LLM routers built on random forests."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if verbose:
        # Keep the dependencies at WARNING: their INFO lines drown RoRF's own.
        for noisy in ("datasets", "huggingface_hub", "urllib3", "httpx", "numba"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _add_commands() -> None:
    from rorf_core.cli import calibrate, plugins_command, route, split, train

    cli.add_command(train.train)
    cli.add_command(split.split)
    cli.add_command(calibrate.calibrate)
    cli.add_command(route.route)
    cli.add_command(plugins_command.plugins)
    for module_name, command_name in _OPTIONAL_COMMANDS:
        try:
            module = __import__(f"rorf_core.cli.{module_name}", fromlist=[command_name])
        except ImportError:
            continue
        cli.add_command(getattr(module, command_name))


# Commands whose modules may import libraries that are optional extras.
_OPTIONAL_COMMANDS = (
    ("evaluate", "evaluate"),
    ("hub_commands", "convert"),
    ("hub_commands", "push"),
    ("serve", "serve"),
)


def main() -> None:
    """Run the ``rorf`` command; RoRF's own errors print as one line."""
    _add_commands()
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except RorfError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(1)
    except click.exceptions.Exit as exit_:
        sys.exit(exit_.exit_code)
