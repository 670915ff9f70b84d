"""Errors a user sees: one line, with the characters of a file or class name that could hide text escaped."""
from typing import Any


def escape_text(text: str, max_len: int = None) -> str:
    """`text` with every non-printable character (newlines, ANSI escapes, bidi overrides) written as
    a Python escape such as \\x1b; cut to `max_len` characters with '...' when given. Idempotent."""
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
    if max_len is not None and len(text) > max_len:
        text = text[:max(max_len - 3, 0)] + "..."
    return text


class UserError(Exception):
    """A problem with the user's input (a file, an option): shown as one line, without a traceback.

    Control characters in the message (e.g. from a file or class name read from a file) are escaped,
    so a message cannot span lines, move the cursor or recolour the terminal.
    """

    def __init__(self, message: Any = "", *args: Any) -> None:
        super().__init__(escape_text(str(message)), *args)



def describe_error(err: BaseException) -> str:
    """The one line shown for a failure: an OSError as 'PATH: reason' (any OSError, a full disk included), a
    MemoryError with a hint, anything else as its message; control characters escaped."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        names = f"{err.filename} -> {err.filename2}" if err.filename2 is not None else f"{err.filename}"
        return escape_text(f"{names}: {err.strerror}")
    if isinstance(err, MemoryError):
        return escape_text(f"out of memory ({str(err) or 'no details'}); try a smaller input or batch")
    return escape_text(str(err) or type(err).__name__)
