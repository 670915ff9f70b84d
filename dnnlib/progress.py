"""Progress of a long stage, shaped for where the output goes: a bar on a terminal, a few plain lines elsewhere.

A tqdm bar redraws itself with a carriage return on every update. On a terminal that is one line; in a
cluster log, a CI log or a `nohup` file every update stays, so a 50k-image FID leaves hundreds of them.
Every stage of the package (metrics, projection, downloads, dataset_tool, bg_white, generate, videos)
reports through `bar()` or `track()`, which follow one process-wide mode:

  bar    tqdm's bars, as before;
  lines  one plain line each time another 5% is done or 30 s have passed, whichever comes first, and one
         when the stage ends; each says the count, the rate and the time left;
  none   nothing;
  auto   bar when stderr is a terminal, else lines (the default).

The mode comes from `--progress` (every tool has it) through `set_mode`, which also puts it into
$SG2_PROGRESS so that spawned processes follow it.
"""
import os
import sys
import time
from typing import Iterable, Optional

import tqdm

MODES = ("auto", "bar", "lines", "none")
ENV_VAR = "SG2_PROGRESS"
LINE_FRACTION = 0.05    # a line each time this share of the total is done...
LINE_SECONDS = 30.0     # ...or this long after the last line, whichever comes first


def set_mode(mode: str) -> None:
    """Choose how every stage of this process (and of the processes it spawns) reports progress."""
    if mode not in MODES:
        raise ValueError(f"progress mode {mode!r} is not one of {', '.join(MODES)}")
    os.environ[ENV_VAR] = mode


def current_mode(stream=None) -> str:
    """'bar', 'lines' or 'none': $SG2_PROGRESS, with 'auto' (or nothing, or a value not known) resolved for
    `stream` (default stderr)."""
    mode = os.environ.get(ENV_VAR, "auto")
    if mode in ("bar", "lines", "none"):
        return mode
    stream = sys.stderr if stream is None else stream
    try:
        return "bar" if stream.isatty() else "lines"
    except (AttributeError, ValueError):  # a replaced or closed stream
        return "lines"


def format_count(value: float, unit: str) -> str:
    """'1234 img', or with unit 'B' a size in KiB/MiB/GiB."""
    if unit != "B":
        return f"{value:g} {unit}" if value != int(value) else f"{int(value)} {unit}"
    for name, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if value >= size:
            return f"{value / size:.1f} {name}"
    return f"{int(value)} B"


def format_rate(rate: float) -> str:
    """'1234', '72.4', '0.0351': whole numbers from 100 up, else three significant digits."""
    return f"{rate:.0f}" if rate >= 100 else f"{rate:.3g}"


def format_duration(seconds: float) -> str:
    """'0:07', '12:03', '1:02:03'."""
    seconds = int(round(max(seconds, 0)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class Lines:
    """A progress report as plain lines (see the module docstring), with the part of tqdm's interface the package
    uses: n, total, update, reset, set_postfix, refresh, close, and use as a context manager."""

    def __init__(self, total: Optional[float] = None, desc: str = "", unit: str = "it", file=None,
                 clock=time.monotonic):
        self.total, self.desc, self.unit = total, desc, unit
        self.file = file
        self.clock = clock
        self.postfix = ""
        self.closed = False
        self.reset(total)

    def reset(self, total: Optional[float] = None) -> None:
        """Start counting again (a download that restarts from byte 0)."""
        if total is not None:
            self.total = total
        self.n = 0
        self.start = self.last_time = self.clock()
        self.last_step = 0          # how many LINE_FRACTION steps the last line had reached
        self.last_n = 0

    def set_postfix(self, **values) -> None:
        """Values shown at the end of each line, e.g. loss=0.123."""
        self.postfix = ", ".join(f"{name}={value}" for name, value in values.items())

    def refresh(self) -> None:
        """tqdm redraws here; a line is written only by the rule."""

    def update(self, count: float = 1) -> None:
        self.n += count
        now = self.clock()
        step = int(self.n / self.total / LINE_FRACTION) if self.total else 0
        if step > self.last_step or now - self.last_time >= LINE_SECONDS:
            self._write(now)
            self.last_step = step

    def close(self) -> None:
        """The final line (unless the last one said the stage was done)."""
        if not self.closed and not (self.total and self.last_n >= self.total):
            self._write(self.clock(), final=True)
        self.closed = True

    def line(self, now: float, final: bool = False) -> str:
        """'desc: 45% 450/1000 img, 12.3 img/s, 0:44 left' (at the end: 'done in 1:21')."""
        elapsed = max(now - self.start, 1e-9)
        rate = self.n / elapsed
        count = format_count(self.n, self.unit)
        if self.total and self.unit == "B":
            count = f"{100 * self.n / self.total:.0f}% {count} of {format_count(self.total, self.unit)}"
        elif self.total:
            count = f"{100 * self.n / self.total:.0f}% {self.n:g}/{format_count(self.total, self.unit)}"
        rate_text = f"{format_count(rate, self.unit)}/s" if self.unit == "B" else f"{format_rate(rate)} {self.unit}/s"
        if final or (self.total and self.n >= self.total):
            when = f"done in {format_duration(elapsed)}"
        elif self.total and rate > 0:
            when = f"{format_duration((self.total - self.n) / rate)} left"
        else:
            when = f"{format_duration(elapsed)} so far"
        parts = [count, rate_text, when] + ([self.postfix] if self.postfix else [])
        return f"{self.desc}: " + ", ".join(parts) if self.desc else ", ".join(parts)

    def _write(self, now: float, final: bool = False) -> None:
        stream = self.file if self.file is not None else sys.stderr
        print(self.line(now, final), file=stream, flush=True)
        self.last_time, self.last_n = now, self.n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def bar(total: Optional[float] = None, desc: str = "", unit: str = "it", disable: bool = False, file=None):
    """A progress report in the current mode: a tqdm bar, a `Lines` report, or a silent tqdm (disable, or mode
    none). All three take update(n), reset(), set_postfix(), close() and `with`."""
    mode = "none" if disable else current_mode(file)
    if mode == "lines":
        return Lines(total=total, desc=desc, unit=unit, file=file)
    scale = dict(unit_scale=True, unit_divisor=1024) if unit == "B" else {}
    return tqdm.tqdm(total=total, desc=desc or None, unit=unit, file=file if file is not None else sys.stderr,
                     dynamic_ncols=True, disable=mode == "none", **scale)


def track(items: Iterable, total: Optional[int] = None, desc: str = "", unit: str = "it", disable: bool = False):
    """Yield the items of `items`, reporting each one done (the report closes when the loop ends or breaks)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with bar(total=total, desc=desc, unit=unit, disable=disable) as report:
        for item in items:
            yield item
            report.update(1)
