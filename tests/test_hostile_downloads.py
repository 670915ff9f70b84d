"""Downloads from a hostile or broken host (a server on 127.0.0.1): bounded in size and time, final errors at once,
transient ones retried within their budget, nothing but whole files ever cached, no temporary file left behind.

The limits are set small through their environment variables (dnnlib/download_limits.py) so each case ends in
seconds; every elapsed time is checked against the limit that applies, plus a margin for this busy machine.
"""
import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import dnnlib
from sg2_cli import generate
from dnnlib import download_limits
from helpers import ROOT
from helpers_http import Route, serve
from test_hostile_cli import assert_one_line_error, run_cli

MARGIN = 5.0  # seconds of slack on a loaded 2-core machine


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def limits(monkeypatch):
    """Small limits: 8 MiB unknown-size files, a 20 s deadline, 2 s stall window."""
    values = dict(SG2_DOWNLOAD_MAX_BYTES=str(8 << 20), SG2_DOWNLOAD_DEADLINE="20", SG2_DOWNLOAD_STALL_SECONDS="2")
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def cache_entries(cache_dir):
    return sorted(os.listdir(cache_dir)) if os.path.isdir(cache_dir) else []


def fetch(url, cache_dir, **kwargs):
    """(UserError message, seconds) of a download that must fail."""
    start = time.monotonic()
    with pytest.raises(dnnlib.util.UserError) as info:
        dnnlib.util.open_url(url, cache_dir=str(cache_dir), verbose=False, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message, time.monotonic() - start


# ----------------------------------------------------------------------------
# Hostile answers, written by hand.

def endless_body(handler, entry):
    """200 without a length, then zeros for ever (until the client hangs up)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/octet-stream")
    handler.end_headers()
    chunk = bytes(1 << 20)
    while True:
        handler.wfile.write(chunk)
        entry["sent"] += len(chunk)


def trickle(interval=0.2, declared=1 << 20):
    """A declared 1 MiB body sent one byte every `interval` seconds: never a read timeout, never an end."""
    def answer(handler, entry):
        handler.send_response(200)
        handler.send_header("Content-Length", str(declared))
        handler.end_headers()
        while True:
            handler.wfile.write(b"\x80")
            handler.wfile.flush()
            entry["sent"] += 1
            time.sleep(interval)
    return answer


def trickled_headers(handler, entry):
    """The status line and headers one byte every 0.2 s: urllib never gets to the body."""
    for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nX-Padding: " + b"a" * 10000:
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        time.sleep(0.2)


def silent(handler, entry):
    time.sleep(60)


def short_body(handler, entry):
    """Announces 100 kB, sends 50 kB and hangs up, every time (resumed requests too)."""
    handler.send_response(200)
    handler.send_header("Content-Length", "100000")
    handler.send_header("ETag", '"v1"')
    handler.end_headers()
    handler.wfile.write(bytes(50000))


def versioned_resume(old, new):
    """The first answer breaks off half-way; the resumed request gets a 206 of another version of the file (a
    new ETag, its bytes from the requested offset); a plain request gets the new version whole."""
    def answer(handler, entry):
        wanted = handler.headers.get("Range")
        if wanted is None and entry.get("first", True) and not getattr(answer, "dropped", False):
            answer.dropped = True
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(old)))
            handler.send_header("ETag", '"old"')
            handler.end_headers()
            handler.wfile.write(old[:len(old) // 2])
            return
        body, status = new, 200
        handler.send_response(206 if wanted else 200)
        start = int(wanted.split("=")[1].rstrip("-")) if wanted else 0
        if wanted:
            handler.send_header("Content-Range", f"bytes {start}-{len(new) - 1}/{len(new)}")
        handler.send_header("Content-Length", str(len(body) - start))
        handler.send_header("ETag", '"new"')
        handler.end_headers()
        handler.wfile.write(body[start:])
    return answer


# ----------------------------------------------------------------------------
# Size and time.

def test_endless_body_stops_at_the_size_limit(tmp_path, limits):
    with serve({"/net.pkl": Route(custom=endless_body)}) as server:
        message, seconds = fetch(server.base_url + "/net.pkl", tmp_path)
        sent = server.requests[0]["sent"]
    assert "more than 8388608 bytes" in message and "SG2_DOWNLOAD_MAX_BYTES" in message and "nothing was cached" in message
    assert sent < 64 << 20, sent  # the client hung up soon after the limit
    assert cache_entries(tmp_path) == []


def huge_announced(handler, entry):
    handler.send_response(200)
    handler.send_header("Content-Length", str(10 << 30))
    handler.end_headers()
    handler.wfile.write(bytes(1 << 16))


def test_announced_size_over_the_limit_is_refused_before_the_body(tmp_path, limits):
    with serve({"/net.pkl": Route(custom=huge_announced)}) as server:
        message, _ = fetch(server.base_url + "/net.pkl", tmp_path)
    assert f"is {10 << 30} bytes, more than the limit" in message
    assert cache_entries(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("answer", [trickle(), trickled_headers, silent], ids=["body", "headers", "silent"])
def test_a_stalled_host_is_dropped_within_the_stall_window(tmp_path, limits, answer):
    with serve({"/net.pkl": Route(custom=answer)}) as server:
        message, seconds = fetch(server.base_url + "/net.pkl", tmp_path)
        count = len(server.requests)
    print(f"refused in {seconds:.1f} s: {message}")
    assert "stalled" in message and "SG2_DOWNLOAD_STALL_SECONDS" in message
    assert seconds < 2 + MARGIN and count == 1  # final: a stalled host is not asked again
    assert cache_entries(tmp_path) == []


@pytest.mark.slow
def test_a_steady_trickle_above_the_stall_rate_ends_at_the_deadline(tmp_path, limits, monkeypatch):
    monkeypatch.setattr(download_limits, "STALL_BYTES", 1)  # every byte counts as progress: only the deadline ends it
    monkeypatch.setenv("SG2_DOWNLOAD_DEADLINE", "3")
    with serve({"/net.pkl": Route(custom=trickle(0.05))}) as server:
        message, seconds = fetch(server.base_url + "/net.pkl", tmp_path)
    assert "deadline of 3 s" in message and seconds < 3 + MARGIN
    assert cache_entries(tmp_path) == []


# ----------------------------------------------------------------------------
# Final errors at once, transient ones within the retry budget.

@pytest.mark.parametrize("routes,needle", [
    ({"/a": Route(status=302, headers={"Location": "/b"}), "/b": Route(status=302, headers={"Location": "/a"})},
     "infinite loop"),
    ({"/a": Route(status=302, headers={"Location": "file:///etc/passwd"})}, "Redirection to url 'file:///etc/passwd' is not allowed"),
    ({"/a": Route(status=301, headers={"Location": "ftp://127.0.0.1/x"})}, "ftp:// URL, which is not followed"),
    ({"/a": Route(b"no", status=403)}, "403"),
    ({"/a": Route(b"gone", status=410)}, "410"),
    ({"/a": Route(b"bad", status=400)}, "400"),
], ids=["redirect-loop", "redirect-file", "redirect-ftp", "403", "410", "400"])
def test_final_errors_fail_at_once(tmp_path, limits, routes, needle):
    with serve(routes) as server:
        message, seconds = fetch(server.base_url + "/a", tmp_path)
        count = len(server.requests)
    assert needle in message, message
    assert seconds < MARGIN and count <= 12  # no retries (a loop costs urllib's own few redirects)
    assert cache_entries(tmp_path) == []


@pytest.mark.parametrize("route", [Route(b"busy", status=503), Route(custom=short_body)], ids=["503", "short-body"])
def test_transient_errors_are_retried_within_the_budget(tmp_path, limits, monkeypatch, route):
    monkeypatch.setattr(download_limits, "RETRY_WAITS", (0.05, 0.1, 0.2, 0.4))  # the defaults' shape, 20x shorter
    with serve({"/net.pkl": route}) as server:
        message, seconds = fetch(server.base_url + "/net.pkl", tmp_path)
        count = len(server.requests)
    budget = sum(download_limits.RETRY_WAITS)
    print(f"{count} requests, {seconds:.1f} s: {message}")
    assert "download failed after" in message
    assert count >= len(download_limits.RETRY_WAITS) + 1 and seconds < budget + MARGIN
    assert cache_entries(tmp_path) == []


def test_transient_errors_stop_at_the_deadline(tmp_path, limits, monkeypatch):
    monkeypatch.setenv("SG2_DOWNLOAD_DEADLINE", "2.5")
    with serve({"/net.pkl": Route(b"busy", status=500)}) as server:
        message, seconds = fetch(server.base_url + "/net.pkl", tmp_path)
    assert "500" in message and seconds < 2.5 + MARGIN / 2


@pytest.mark.parametrize("name,value", [("SG2_DOWNLOAD_DEADLINE", "nan"), ("SG2_DOWNLOAD_MAX_BYTES", "-1"),
                                        ("SG2_DOWNLOAD_STALL_SECONDS", "soon")])
def test_limits_from_the_environment_are_checked(tmp_path, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with serve({"/net.pkl": Route(b"x")}) as server:
        message, _ = fetch(server.base_url + "/net.pkl", tmp_path)
        assert server.requests == []
    assert message.startswith(f"${name}: ") and "not a positive number" in message


# ----------------------------------------------------------------------------
# What is cached: whole files only, never pages, never spliced versions.

@pytest.mark.parametrize("body,content_type", [
    (b"\xef\xbb\xbf<!DOCTYPE html><html><head><title>Sign in</title></head></html>", "application/octet-stream"),
    (b"<div class='login'>Please sign in</div>" + bytes(1000).replace(b"\0", b" "), "application/octet-stream"),
    (b"\xff\xfe" + "<html><body>quota</body></html>".encode("utf-16-le"), "application/octet-stream"),
    (b"  \r\n<?xml version='1.0'?><Error><Code>AccessDenied</Code></Error>", "binary/octet-stream"),
], ids=["utf8-bom", "bare-div", "utf16-bom", "xml-error"])
def test_pages_that_look_like_files_are_not_cached(tmp_path, limits, body, content_type):
    with serve({"/net.pkl": Route(body, content_type=content_type)}) as server:
        message, _ = fetch(server.base_url + "/net.pkl", tmp_path)
    assert "returned a web page" in message and "nothing was cached" in message
    assert cache_entries(tmp_path) == []


def test_binary_files_that_start_like_markup_are_kept(tmp_path, limits):
    # A safetensors header of 0x643C bytes starts with '<d' and then NUL bytes: a file, not a page.
    body = (0x643C).to_bytes(8, "little") + b"{" + bytes(100)
    with serve({"/net.safetensors": Route(body)}) as server:
        path = dnnlib.util.open_url(server.base_url + "/net.safetensors", cache_dir=str(tmp_path), verbose=False,
                                    return_filename=True)
    assert open(path, "rb").read() == body


def test_a_resumed_answer_of_another_version_restarts_instead_of_splicing(tmp_path, limits):
    old = np.random.RandomState(1).bytes(3 << 20)
    new = np.random.RandomState(2).bytes(3 << 20)
    with serve({"/net.pkl": Route(custom=versioned_resume(old, new))}) as server:
        path = dnnlib.util.open_url(server.base_url + "/net.pkl", cache_dir=str(tmp_path), verbose=False,
                                    return_filename=True)
        ranges = [r["range"] for r in server.requests]
    data = open(path, "rb").read()
    assert hashlib.sha256(data).digest() == hashlib.sha256(new).digest()  # all new, no old half in front
    assert ranges == [None, f"bytes={len(old) // 2}-", None]
    assert cache_entries(tmp_path) == [os.path.basename(path)]


def wrong_range(body):
    """The first answer breaks off half-way; a resumed request gets a 206 that starts at byte 0 again."""
    def answer(handler, entry):
        wanted = handler.headers.get("Range")
        first = not getattr(answer, "dropped", False)
        answer.dropped = True
        handler.send_response(206 if wanted else 200)
        if wanted:
            handler.send_header("Content-Range", f"bytes 0-{len(body) - 1}/{len(body)}")
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("ETag", '"v1"')
        handler.end_headers()
        handler.wfile.write(body[:len(body) // 2] if first else body)
    return answer


def test_a_206_for_another_range_restarts(tmp_path, limits):
    body = np.random.RandomState(4).bytes(2 << 20)
    with serve({"/net.pkl": Route(custom=wrong_range(body))}) as server:
        path = dnnlib.util.open_url(server.base_url + "/net.pkl", cache_dir=str(tmp_path), verbose=False,
                                    return_filename=True)
        ranges = [r["range"] for r in server.requests]
    assert open(path, "rb").read() == body  # not the first half twice
    assert ranges == [None, f"bytes={len(body) // 2}-", None]


def test_resume_needs_a_validator(tmp_path, limits):
    payload = np.random.RandomState(3).bytes(2 << 20)
    with serve({"/net.pkl": Route(payload, drop_after=len(payload) // 2, etag=False)}) as server:
        path = dnnlib.util.open_url(server.base_url + "/net.pkl", cache_dir=str(tmp_path), verbose=False,
                                    return_filename=True)
        ranges = [r["range"] for r in server.requests]
    assert open(path, "rb").read() == payload
    assert ranges == [None, None]  # without ETag or Last-Modified a Range request could splice two versions


# ----------------------------------------------------------------------------
# Through the command-line tools: one line, no traceback; SIGTERM leaves no temporary file.

def test_generate_with_an_endless_url(tmp_path, limits, capsys, monkeypatch):
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "cache"))
    with serve({"/net.pkl": Route(custom=endless_body)}) as server:
        status, stderr = run_cli(generate.main, [f"--network={server.base_url}/net.pkl", "--seeds=0",
                                                 f"--outdir={tmp_path / 'out'}", "--device=cpu"], capsys, monkeypatch)
    assert_one_line_error(status, stderr, "net.pkl", "SG2_DOWNLOAD_MAX_BYTES")
    assert cache_entries(tmp_path / "cache" / "downloads") == []


@pytest.mark.slow
def test_sigterm_during_a_download_removes_the_temporary_file(tmp_path, limits):
    cache = tmp_path / "cache"
    env = dict(os.environ, DNNLIB_CACHE_DIR=str(cache), SG2_DOWNLOAD_STALL_SECONDS="600",
               SG2_DOWNLOAD_DEADLINE="600", PYTHONPATH=ROOT)
    with serve({"/net.pkl": Route(custom=trickle(0.01, declared=4 << 20))}, lifetime=300) as server:
        proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "generate.py"), f"--network={server.base_url}/net.pkl",
                                 "--seeds=0", f"--outdir={tmp_path / 'out'}", "--device=cpu"], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while not any(".tmp-" in name for name in cache_entries(cache / "downloads")):
                assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
                time.sleep(0.1)
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            start = time.monotonic()
            _out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print(f"exited {time.monotonic() - start:.2f} s after SIGTERM with status {proc.returncode}")
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err
    assert cache_entries(cache / "downloads") == []
