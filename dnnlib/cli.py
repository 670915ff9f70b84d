"""Running click commands so that user errors read as one line instead of a traceback."""
import os
import sys
import traceback

import click

from .util import UserError, escape_text


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
    except (UserError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
            PermissionError) as err:
        if verbose:
            traceback.print_exc()
        click.echo(f"Error: {escape_text(str(err))}", err=True)
        sys.exit(1)


def parsed_by(parse):
    """A click callback that parses an option's text with `parse` (None stays None); ValueError -> usage error."""
    def callback(ctx, param, value):
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as err:
            raise click.BadParameter(str(err)) from None
    return callback
