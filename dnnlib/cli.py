"""Running click commands so that user errors read as one line instead of a traceback."""
import os
import sys
import traceback

import click

from . import image_grid
from .util import UserError


def parse_grid_option(_ctx, _param, value):
    """click callback of the commands' --grid ROWSxCOLS: (rows, cols), or None when not given."""
    if value is None:
        return None
    try:
        return image_grid.parse_grid(value)
    except ValueError as err:
        raise click.BadParameter(str(err))


def unsupported_option(name: str, origin: str, instead: str):
    """A hidden option that the original tool `origin` has and this package does not: giving it is a clear error."""
    def refuse(_ctx, _param, value):
        if value is not None:
            raise click.UsageError(f"{name} is an option of {origin} that this package does not have; {instead}")
        return value
    return click.option(name, hidden=True, expose_value=False, callback=refuse)


def run(command: click.Command) -> None:
    """Invoke a click command; UserError (and unreadable files) print one line and exit 1.

    The full traceback is shown when the command line holds --verbose or $SG2_VERBOSE is set.
    """
    verbose = "--verbose" in sys.argv[1:] or bool(os.environ.get("SG2_VERBOSE"))
    try:
        command.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except (UserError, FileNotFoundError, IsADirectoryError, PermissionError) as err:
        if verbose:
            traceback.print_exc()
        click.echo(f"Error: {err}", err=True)
        sys.exit(1)
