"""A loopback HTTP server for download tests: plays Google Drive, the Hugging Face Hub and plain file hosts.

Runs on 127.0.0.1 in a daemon thread, stops when the test's `with` block ends (or after `lifetime`
seconds at the latest), and records every request so tests can count what was transferred.
"""
import contextlib
import hashlib
import http.server
import re
import threading


class Route:
    """What one path answers: a status, headers and a body; optionally cut off once, optionally honouring Range."""

    def __init__(self, body=b"", status=200, content_type="application/octet-stream", headers=None,
                 drop_after=None, ranges=True, custom=None, etag=True):
        self.body = body
        self.status = status
        self.content_type = content_type
        self.headers = dict(headers or {})
        self.drop_after = drop_after  # the first GET sends this many bytes, then closes the connection
        self.ranges = ranges          # honour 'Range: bytes=N-' with 206?
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"' if etag else None  # etag=False: none sent
        self.custom = custom          # custom(handler, request entry): writes the whole answer itself (hostile hosts)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # a stuck client cannot hold a worker thread for long

    def log_message(self, *args):  # quiet: tests read server.requests instead
        pass

    def do_HEAD(self):
        self._answer(send_body=False)

    def do_GET(self):
        self._answer(send_body=True)

    def _answer(self, send_body):
        route = self.server.routes.get(self.path)
        entry = dict(method=self.command, path=self.path, range=self.headers.get("Range"), sent=0)
        self.server.requests.append(entry)
        if route is None:
            route = Route(b"not found", status=404, content_type="text/plain")
        if route.custom is not None:
            self.close_connection = True
            try:
                route.custom(self, entry)
            except OSError:  # the client hung up: what a hostile host expects
                pass
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if_range = self.headers.get("If-Range")
        partial = route.status == 200 and route.ranges and match and (if_range is None or if_range == route.etag)
        if partial:
            start = int(match.group(1))
        body = route.body[start:]
        self.send_response(206 if partial else route.status)
        self.send_header("Content-Type", route.content_type)
        self.send_header("Content-Length", str(len(body)))
        if route.etag is not None:
            self.send_header("ETag", route.etag)
        if route.ranges:
            self.send_header("Accept-Ranges", "bytes")
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{len(route.body) - 1}/{len(route.body)}")
        for name, value in route.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if not send_body:
            return
        if route.drop_after is not None and self.command == "GET":
            body, route.drop_after = body[:route.drop_after], None
            self.close_connection = True
        self.wfile.write(body)
        self.wfile.flush()
        entry["sent"] = len(body)


@contextlib.contextmanager
def serve(routes, lifetime=120):
    """Serve {path (with query): Route} on 127.0.0.1; yields the server (.base_url, .requests, .routes)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.routes = dict(routes)
    server.requests = []
    server.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)
    thread.start()
    deadline = threading.Timer(lifetime, server.shutdown)  # never outlives a hung test for long
    deadline.daemon = True
    deadline.start()
    try:
        yield server
    finally:
        deadline.cancel()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
