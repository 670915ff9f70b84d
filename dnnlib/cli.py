"""Running click commands so that user errors read as one line instead of a traceback."""
import os
import sys
import traceback

import click

from .util import UserError, escape_text, sigterm_raises


def describe_error(err: BaseException) -> str:
    """The one line shown for an error: an OSError as 'PATH: reason' (any OSError, a full disk included)."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        names = f"{err.filename} -> {err.filename2}" if err.filename2 is not None else f"{err.filename}"
        return escape_text(f"{names}: {err.strerror}")
    if isinstance(err, MemoryError):
        return escape_text(f"out of memory ({str(err) or 'no details'}); try a smaller input or batch")
    return escape_text(str(err) or type(err).__name__)


def run(command: click.Command) -> None:
    """Invoke a click command; UserError, any OSError and MemoryError print one line and exit 1.

    SIGTERM and SIGHUP end the command through SystemExit (status 143, 129), so it cleans up on the way
    out (dnnlib.util.sigterm_raises). The full traceback is shown when the command line holds --verbose
    or $SG2_VERBOSE is set.
    """
    verbose = "--verbose" in sys.argv[1:] or bool(os.environ.get("SG2_VERBOSE"))
    try:
        with sigterm_raises():
            command.main(standalone_mode=False)
        return
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        status = 1
    except click.ClickException as err:
        err.show()
        status = err.exit_code
    except (UserError, OSError, MemoryError) as err:
        if verbose:
            traceback.print_exc()
        click.echo(f"Error: {describe_error(err)}", err=True)
        status = 1
    # Exit outside the handler: the error's traceback (and what its frames hold, e.g. data-loader workers) is
    # released first instead of living on as the SystemExit's context until the interpreter shuts down.
    sys.exit(status)


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
