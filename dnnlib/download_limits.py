"""The limits of one download: size, overall deadline, stall timeout, retry budget, and which errors are final.

dnnlib/download.py streams through connections made here. A watchdog thread closes them as soon as the
deadline passes or the transfer stalls, so no read can block past either: a server that sends one byte now
and then, or never finishes its headers, ends like one that sends nothing. The numbers can be set in the
environment (for slow links, or tests):

    SG2_DOWNLOAD_MAX_BYTES      largest file fetched when its size is not known in advance (default 4 GiB)
    SG2_DOWNLOAD_DEADLINE       seconds one download may take in all, attempts included (default 7200)
    SG2_DOWNLOAD_STALL_SECONDS  seconds in which at least STALL_BYTES must arrive (default 60)
"""
import dataclasses
import http.client
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Optional

from .errors import UserError

MAX_BYTES = 4 << 30           # a full training pickle of a 1024 network is about 1 GB
DEADLINE_SECONDS = 7200.0
STALL_SECONDS = 60.0
STALL_BYTES = 64 << 10        # a trickle slower than this per STALL_SECONDS counts as a stall
RETRY_WAITS = (1, 2, 4, 8)    # seconds before each retry of an attempt that made no progress (15 s in all)
TRANSIENT_HTTP_CODES = (408, 429, 500, 502, 503, 504)
ALLOWED_SCHEMES = ("http", "https")
WATCH_INTERVAL = 0.1          # seconds between the watchdog's checks


@dataclasses.dataclass
class Limits:
    max_bytes: int = MAX_BYTES
    deadline: float = DEADLINE_SECONDS
    stall_seconds: float = STALL_SECONDS

    @staticmethod
    def from_environment() -> "Limits":
        return Limits(max_bytes=int(_env_number("SG2_DOWNLOAD_MAX_BYTES", MAX_BYTES)),
                      deadline=_env_number("SG2_DOWNLOAD_DEADLINE", DEADLINE_SECONDS),
                      stall_seconds=_env_number("SG2_DOWNLOAD_STALL_SECONDS", STALL_SECONDS))


def _env_number(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise UserError(f"${name}: {text!r} is not a positive number")
    return value


class LimitReached(Exception):
    """The download went past a limit (deadline, stall, size): final, never retried."""


class Watchdog:
    """Closes the connections of one download when its deadline passes or it stalls (less than STALL_BYTES in
    stall_seconds, counted from the start of each attempt); `check()` then raises LimitReached with the reason."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.deadline = time.monotonic() + limits.deadline
        self.reason = None
        self._sockets = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.new_attempt()
        self._thread = threading.Thread(target=self._watch, name="download-watchdog", daemon=True)
        self._thread.start()

    def new_attempt(self) -> None:
        self._mark_time, self._since_mark = time.monotonic(), 0

    def waiting(self) -> None:
        """Between attempts (a retry's wait) nothing can stall; only the deadline counts."""
        self._mark_time = None

    def progress(self, nbytes: int) -> None:
        self._since_mark += nbytes
        if self._since_mark >= STALL_BYTES or self._mark_time is None:
            self.new_attempt()

    def register(self, sock) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.reason is not None:
                _shut(sock)

    def check(self) -> None:
        if self.reason is not None:
            raise LimitReached(self.reason)

    def close(self) -> None:
        self._stopped.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stopped.wait(WATCH_INTERVAL):
            now = time.monotonic()
            if now > self.deadline:
                self.reason = f"not complete within the deadline of {self.limits.deadline:g} s ($SG2_DOWNLOAD_DEADLINE)"
            elif self._mark_time is not None and now - self._mark_time > self.limits.stall_seconds:
                self.reason = (f"stalled: less than {STALL_BYTES >> 10} KB in {self.limits.stall_seconds:g} s "
                               "($SG2_DOWNLOAD_STALL_SECONDS)")
            if self.reason is not None:
                with self._lock:
                    for sock in self._sockets:
                        _shut(sock)
                return

    def socket_timeout(self) -> float:
        """The timeout of blocking socket calls (connect included), just past the stall time or the deadline, so
        the watchdog's reason is known when one fires."""
        return max(0.1, min(self.limits.stall_seconds, self.deadline - time.monotonic())) + 1.0


def _shut(sock) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # a blocked recv() in another thread returns at once
    except OSError:
        pass


def _watched(connection, watchdog: Watchdog):
    """An http.client connection whose socket the watchdog gets as soon as it is connected."""
    connect = connection.connect

    def watched_connect():
        connect()
        watchdog.register(connection.sock)
    connection.connect = watched_connect
    return connection


class _WatchedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, watchdog: Watchdog):
        super().__init__()
        self.watchdog = watchdog

    def http_open(self, req):
        return self.do_open(lambda host, **kw: _watched(http.client.HTTPConnection(host, **kw), self.watchdog), req)


class _WatchedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, watchdog: Watchdog):
        super().__init__()
        self.watchdog = watchdog

    def https_open(self, req):
        return self.do_open(lambda host, **kw: _watched(http.client.HTTPSConnection(host, **kw), self.watchdog), req,
                            context=self._context)


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Redirects to http(s) only (urllib alone would also follow ftp://); loops end in an HTTPError (final)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        scheme = urllib.parse.urlparse(urllib.parse.urljoin(req.full_url, newurl)).scheme.lower()
        if scheme not in ALLOWED_SCHEMES:
            raise urllib.error.HTTPError(req.full_url, code, f"a redirect to a {scheme}:// URL, which is not "
                                         "followed", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def build_opener(cookies, watchdog: Watchdog):
    """A urllib opener whose connections the watchdog can close, with cookies and http(s)-only redirects."""
    return urllib.request.build_opener(_WatchedHTTPHandler(watchdog), _WatchedHTTPSHandler(watchdog),
                                       _RedirectHandler(), urllib.request.HTTPCookieProcessor(cookies))


def is_transient(err: BaseException) -> bool:
    """Whether asking again may help: server overload (5xx, 408, 429) and dropped connections, not 4xx,
    redirect loops, redirects to other schemes or malformed URLs."""
    if isinstance(err, urllib.error.HTTPError):
        return err.code in TRANSIENT_HTTP_CODES
    if isinstance(err, urllib.error.URLError):
        return isinstance(err.reason, OSError)  # refused, reset, timed out, no route; not 'unknown url type'
    return isinstance(err, (OSError, http.client.HTTPException))


def retry_wait(failures_without_progress: int) -> Optional[float]:
    """Seconds to wait before the next attempt after this many failures in a row without progress; None: stop."""
    if failures_without_progress > len(RETRY_WAITS):
        return None
    return RETRY_WAITS[failures_without_progress - 1] if failures_without_progress else 0.0
