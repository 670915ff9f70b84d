"""Running a tool's click command: every error a user can cause reads as one line.

Usage errors (an unknown option, a bad value) print `Error: ...` and exit with status 2; failures
(UserError, any OSError such as a missing file or a full disk, MemoryError) print `Error: ...` and exit with
status 1. The traceback of a failure is shown only with --verbose (read through click, see
options.verbose_option) or $SG2_VERBOSE. SIGTERM and SIGHUP end the command through SystemExit (status 143,
129), so it cleans up on the way out (dnnlib.util.sigterm_raises).
"""
import dataclasses
import os
import sys
import traceback
from typing import Optional, Sequence

import click

from dnnlib.errors import describe_error
from dnnlib.util import UserError, escape_text, sigterm_raises

# Failures that are the user's to fix or the machine's (a full disk, too little memory); anything else is a bug
# and keeps its traceback.
USER_FAILURES = (UserError, OSError, MemoryError)


@dataclasses.dataclass
class RunState:
    """What the options of one run tell the runner; click hands it to every (sub)command as ctx.obj."""
    verbose: bool = False


def one_line(text: str) -> str:
    """Click's message on one line (some span several), control characters escaped (they may quote input)."""
    return escape_text(" ".join(str(text).split()))


def run(command: click.Command, args: Optional[Sequence[str]] = None, prog_name: Optional[str] = None) -> None:
    """Invoke `command` on `args` (default: sys.argv[1:]) and exit as described in the module docstring."""
    state = RunState(verbose=bool(os.environ.get("SG2_VERBOSE")))
    try:
        with sigterm_raises():
            command.main(args=args, prog_name=prog_name, standalone_mode=False, obj=state)
        return
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        status = 1
    except click.ClickException as err:
        click.echo(f"Error: {one_line(err.format_message())}", err=True)
        status = err.exit_code
    except USER_FAILURES as err:
        if state.verbose:
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
