"""Downloading checkpoints and detectors into the cache: streamed, resumable, checked, never half-written.

`dnnlib.util.open_url` is the entry point; this module does the work behind it:
- every http(s) download streams into a temporary file beside its cache entry (with a progress report),
  resumes with an HTTP Range request after a dropped connection where the server allows it, and is
  renamed into place only when whole and, given a SHA-256, only when it matches;
- Google Drive file links are turned into the download endpoint, and its virus-scan confirmation
  page is followed; its quota and access pages become one-line errors;
- a web page or JSON that arrives instead of a file is never cached;
- `hf://` and huggingface.co `resolve/` links go through the optional huggingface_hub library.
"""
import hashlib
import html.parser
import http.client
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from typing import Optional, Tuple

from . import download_limits, progress
from .errors import UserError
from .output_files import atomic_write

CHUNK_SIZE = 1 << 20            # bytes per read while streaming (at most; a read returns what has arrived)
MAX_PAGE_BYTES = 1 << 20        # how much of a web page is read to find a form or an error message
USER_AGENT = "stylegan-human-sg2 (urllib)"
TEXT_SUFFIXES = (".html", ".htm", ".json", ".txt", ".csv", ".xml", ".md")  # downloads that may be text

# Google Drive. Tests point these at a local stand-in server; real links always name these hosts.
DRIVE_HOSTS = {"drive.google.com", "docs.google.com", "drive.usercontent.google.com"}
DRIVE_DOWNLOAD_URL = "https://drive.usercontent.google.com/download"
DRIVE_CONFIRM_ROUNDS = 3        # confirmation pages followed before giving up

# Hugging Face Hub.
HUB_HOSTS = {"huggingface.co", "hf.co"}
HUB_REPO_TYPES = ("datasets", "spaces", "models")


def printable(text: str, limit: int = 120) -> str:
    """One line of at most `limit` characters, for quoting server text in an error message."""
    text = re.sub(r"\s+", " ", "".join(ch if ch.isprintable() else " " for ch in text)).strip()
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ----------------------------------------------------------------------------
# Integrity: SHA-256 from an option or a '#sha256=' URL fragment.

def normalize_sha256(value: Optional[str], what: str = "--sha256") -> Optional[str]:
    if value is None:
        return None
    value = value.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise UserError(f"{what}: {printable(value, 80)!r} is not a SHA-256 (64 hexadecimal digits)")
    return value


def split_sha256_fragment(url: str, sha256: Optional[str] = None) -> Tuple[str, Optional[str]]:
    """(url without a '#sha256=HEX' fragment, the expected digest); the option and the fragment must agree."""
    sha256 = normalize_sha256(sha256)
    base, sep, fragment = url.partition("#")
    if not sep or not fragment.lower().startswith("sha256="):
        return url, sha256
    from_fragment = normalize_sha256(fragment[len("sha256="):], what=f"{base}: the #sha256= fragment")
    if sha256 is not None and sha256 != from_fragment:
        raise UserError(f"--sha256: {sha256} contradicts the URL's #sha256={from_fragment}; give one of them")
    return base, from_fragment


def file_sha256(path: str) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_SIZE), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def check_sha256(path: str, expected: Optional[str], what: str) -> None:
    """Refuse a file whose SHA-256 differs from `expected` (None: no check)."""
    if expected is None:
        return
    actual = file_sha256(path)
    if actual != expected:
        raise UserError(f"{what}: SHA-256 is {actual}, expected {expected}; the file is damaged or not the "
                        "one meant, and was not used")


# ----------------------------------------------------------------------------
# What came back: a file, or a web page / JSON in its place.

class _PageScan(html.parser.HTMLParser):
    """The parts of a web page that matter here: its title, its forms (action, fields) and its links."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.forms = []
        self.links = []
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        attrs = {name: value or "" for name, value in attrs}
        if tag == "title":
            self._in_title = True
        elif tag == "form":
            self.forms.append(dict(id=attrs.get("id", ""), action=attrs.get("action", ""),
                                   method=attrs.get("method", "get").lower(), fields={}))
        elif tag == "input" and self.forms and attrs.get("name"):
            self.forms[-1]["fields"][attrs["name"]] = attrs.get("value", "")
        elif tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data


def scan_page(page: bytes) -> _PageScan:
    scan = _PageScan()
    scan.feed(page.decode("utf-8", errors="replace"))
    scan.close()
    return scan


def _text_start(head: bytes) -> Optional[bytes]:
    """The first bytes of `head` as UTF-8 text without a byte-order mark (UTF-16 decoded), or None when they hold
    NUL bytes: binary formats do (a safetensors length, a pickle's opcodes), text never does."""
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    elif head.startswith((b"\xff\xfe", b"\xfe\xff")):
        head = head[:1024].decode("utf-16", errors="replace").encode("utf-8", errors="replace")
    head = head[:512]
    return None if b"\0" in head else head


def _is_html(head: bytes, content_type: str) -> bool:
    """An HTML (or XML) page: by its type, or by a start such as '<!doctype', '<html', '<div', '<?xml', '<!--'."""
    start = _text_start(head)
    return content_type in ("text/html", "application/xhtml+xml") or \
        (start is not None and re.match(rb"\s*<[!?A-Za-z]", start) is not None)


def _is_json(head: bytes, content_type: str) -> bool:
    start = _text_start(head)
    # Pickles start with 0x80 (or an opcode), zips with 'PK', safetensors with a length: never '{"' or '['.
    return content_type == "application/json" or \
        (start is not None and re.match(rb'\s*(\{\s*"|\{\s*\}|\[\s*[\[\]{"0-9-])', start) is not None)


def describe_text_response(head: bytes, content_type: Optional[str]) -> Optional[str]:
    """'a web page ("title")' or 'JSON (...)' when the bytes are not a binary file; else None."""
    content_type = (content_type or "").split(";")[0].strip().lower()
    if _is_html(head, content_type):
        title = printable(scan_page(head).title)
        return f'a web page ("{title}")' if title else "a web page"
    if _is_json(head, content_type):
        return f"JSON ({printable(head.decode('utf-8', errors='replace'), 100)})"
    return None


def expects_binary(url: str) -> bool:
    """Whether a text answer means failure: true unless the URL names a text file."""
    return not urllib.parse.urlparse(url).path.lower().endswith(TEXT_SUFFIXES)


def cached_file_usable(path: str, url: str, sha256: Optional[str], verbose: bool) -> bool:
    """A cache entry is used only if it is not a web page (as older versions cached for Drive links) and its
    SHA-256 matches when one is given; otherwise it is downloaded again (and replaced atomically)."""
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        head = f.read(4096)
    problem = describe_text_response(head, None) if expects_binary(url) else None
    if problem is None and sha256 is not None and file_sha256(path) != sha256:
        problem = "a file with another SHA-256"
    if problem is not None and verbose:
        print(f"{path}: the cached download of {url} is {problem}; downloading it again", file=sys.stderr)
    return problem is None


# ----------------------------------------------------------------------------
# Google Drive.

def drive_file_id(url: str) -> Optional[str]:
    """The file ID of a Drive link (/file/d/ID/..., open?id=ID, uc?id=ID, download?id=ID), else None."""
    parsed = urllib.parse.urlparse(url)
    if parsed.netloc.lower() not in DRIVE_HOSTS:
        return None
    match = re.match(r"/file/d/([0-9A-Za-z_-]+)", parsed.path)
    if match:
        return match.group(1)
    if parsed.path.rstrip("/") in ("/open", "/uc", "/download"):
        ids = urllib.parse.parse_qs(parsed.query).get("id", [])
        if ids and re.fullmatch(r"[0-9A-Za-z_-]+", ids[0]):
            return ids[0]
    return None


def drive_download_url(file_id: str) -> str:
    return f"{DRIVE_DOWNLOAD_URL}?{urllib.parse.urlencode(dict(id=file_id, export='download'))}"


_DRIVE_QUOTA_MARKERS = ("quota exceeded", "too many users have viewed or downloaded")
_DRIVE_DENIED_MARKERS = ("you need access", "request access", "access denied", "accounts.google.com/",
                         "sign in - google accounts")


def _drive_host_allowed(url: str) -> bool:
    host = urllib.parse.urlparse(url).netloc.lower()
    return host in DRIVE_HOSTS or host == urllib.parse.urlparse(DRIVE_DOWNLOAD_URL).netloc.lower()


def drive_confirmation_url(page: bytes, page_url: str, cookies: CookieJar) -> Optional[str]:
    """Where the 'cannot scan this file for viruses' page sends its 'Download anyway' button, if it is one."""
    scan = scan_page(page)
    for form in scan.forms:
        action = urllib.parse.urljoin(page_url, form["action"] or page_url)
        if (form["id"] == "download-form" or "confirm" in form["fields"]) and _drive_host_allowed(action):
            return f"{action.split('?')[0]}?{urllib.parse.urlencode(form['fields'])}"
    for link in scan.links:
        target = urllib.parse.urljoin(page_url, link)
        if "confirm=" in target and _drive_host_allowed(target):
            return target
    for cookie in cookies:  # older pages: the token came as a download_warning cookie
        if cookie.name.startswith("download_warning"):
            return f"{page_url}&{urllib.parse.urlencode(dict(confirm=cookie.value))}"
    return None


def drive_page_error(page: bytes, url: str, hint: str) -> UserError:
    """The one-line error for a Drive page that is not a confirmation: quota, no access, or something else."""
    text = page.decode("utf-8", errors="replace").lower()
    by_hand = f"download it by hand in a browser from {url}{hint}"
    if any(marker in text for marker in _DRIVE_QUOTA_MARKERS):
        return UserError(f"{url}: Google Drive refuses the download for now (quota exceeded: too many people "
                         f"downloaded this file recently); {by_hand}")
    if any(marker in text for marker in _DRIVE_DENIED_MARKERS):
        return UserError(f"{url}: Google Drive denies access to this file (it is private, or was removed); "
                         f"ask its owner, or {by_hand}")
    what = describe_text_response(page, "text/html")
    return UserError(f"{url}: Google Drive returned {what} instead of the file; nothing was cached; {by_hand}")


# ----------------------------------------------------------------------------
# Streaming with resume, within the limits of dnnlib/download_limits.py.

def _request(opener, url: str, watchdog: download_limits.Watchdog, headers: Optional[dict] = None):
    headers = dict(headers or {}, **{"User-Agent": USER_AGENT})
    return opener.open(urllib.request.Request(url, headers=headers), timeout=watchdog.socket_timeout())


def _open_drive_file(session, target: str):
    """The response that carries the Drive file's bytes, after any confirmation pages."""
    url, hint, file_id = session.url, session.hint, session.file_id
    for _round in range(DRIVE_CONFIRM_ROUNDS):
        try:
            response = _request(session.opener, target, session.watchdog)
        except urllib.error.HTTPError as err:
            page = err.read(MAX_PAGE_BYTES)
            if err.code == 404:
                raise UserError(f"{url}: Google Drive has no file with ID {file_id} (removed, or a wrong link)")
            if err.code in (401, 403, 429) or describe_text_response(page, err.headers.get("Content-Type")):
                raise drive_page_error(page, url, hint) from None
            raise
        content_type = response.headers.get("Content-Type", "")
        if not content_type.lower().startswith("text/html"):
            return response
        with response:
            page = response.read(MAX_PAGE_BYTES)
        target = drive_confirmation_url(page, response.geturl(), session.cookies)
        if target is None:
            raise drive_page_error(page, url, hint)
    raise UserError(f"{url}: Google Drive kept asking for confirmation; download it by hand in a browser{hint}")


def _parse_content_range(value: Optional[str]) -> Tuple[Optional[int], Optional[int], Optional[int]]:
    """'bytes START-END/TOTAL' -> (START, END, TOTAL or None)."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not match:
        return None, None, None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), int(match.group(2)), total


class _Restart(Exception):
    """A resumed answer that does not continue the file (another range, total or version): start again from 0."""


class _Transfer:
    """One file's bytes arriving in a temporary file: how many, their SHA-256, the expected total."""

    def __init__(self, f, url: str, source: str, verbose: bool, limits: download_limits.Limits):
        self.f = f
        self.url = url
        self.source = source            # who answers, for messages ('Google Drive', a host name)
        self.limits = limits
        self.size = 0
        self.total = None               # the file's size, from Content-Length / Content-Range
        self.hasher = hashlib.sha256()
        self.validator = None           # ETag or Last-Modified of the first answer: resuming needs one
        name = os.path.basename(urllib.parse.urlparse(url).path) or "download"
        self.bar = progress.bar(desc=printable(name, 40), unit="B", disable=not verbose)

    def restart(self):
        self.f.seek(0)
        self.f.truncate()
        self.size = 0
        self.total = self.validator = None
        self.hasher = hashlib.sha256()
        self.bar.reset()

    def start(self, response) -> None:
        """Take a response's headers: a 206 must continue exactly where we are, anything else starts at byte 0."""
        headers = response.headers
        if response.status == 206:
            self._check_resumed(headers)
        else:
            self.restart()
            length = headers.get("Content-Length")
            self.total = int(length) if length and length.isdigit() else None
            self.validator = headers.get("ETag") or headers.get("Last-Modified")
        if self.total is not None and self.total > self.limits.max_bytes:
            raise download_limits.LimitReached(f"the file is {self.total} bytes, more than the limit of "
                                               f"{self.limits.max_bytes} ($SG2_DOWNLOAD_MAX_BYTES)")
        self.bar.total = self.total
        self.bar.refresh()

    def _check_resumed(self, headers) -> None:
        start, _end, total = _parse_content_range(headers.get("Content-Range"))
        validator = headers.get("ETag") or headers.get("Last-Modified")
        if start != self.size:
            problem = f"resumed at byte {start}, not {self.size}"
        elif total is not None and self.total is not None and total != self.total:
            problem = f"now has {total} bytes, not {self.total}"
        elif validator is not None and validator != self.validator:
            problem = "sent another version of the file"
        else:
            self.total = total if total is not None else self.total
            return
        self.restart()
        raise _Restart(f"the server {problem}; starting again")

    def copy(self, response, check_text: bool, watchdog: download_limits.Watchdog) -> None:
        while True:
            chunk = response.read1(CHUNK_SIZE) if hasattr(response, "read1") else response.read(CHUNK_SIZE)
            watchdog.check()
            if not chunk:
                return
            if self.size == 0 and check_text:
                what = describe_text_response(chunk, response.headers.get("Content-Type"))
                if what is not None:
                    raise UserError(f"{self.url}: {self.source} returned {what} where a file was expected; "
                                    "nothing was cached")
            if self.size + len(chunk) > min(self.limits.max_bytes, self.total or self.limits.max_bytes):
                raise download_limits.LimitReached(f"more than {self.total or self.limits.max_bytes} bytes arrived "
                                                   f"({'the announced size' if self.total else '$SG2_DOWNLOAD_MAX_BYTES'})")
            self.f.write(chunk)
            self.hasher.update(chunk)
            self.size += len(chunk)
            self.bar.update(len(chunk))
            watchdog.progress(len(chunk))

    def complete(self) -> bool:
        return self.total is None or self.size >= self.total


class _Session:
    """The requests of one download: cookies (Drive sets some), the watchdog of its limits, and the file's own
    URL once it is known."""

    def __init__(self, url: str, hint: str, watchdog: download_limits.Watchdog):
        self.url = url
        self.hint = hint
        self.watchdog = watchdog
        self.cookies = CookieJar()
        self.opener = download_limits.build_opener(self.cookies, watchdog)
        self.file_id = drive_file_id(url)
        self.file_url = None            # where the bytes came from (after Drive's pages and redirects)

    @property
    def source(self) -> str:
        return "Google Drive" if self.file_id else urllib.parse.urlparse(self.url).netloc

    def open(self, transfer: _Transfer):
        """The first request (through Drive's pages when needed), or a Range request for what is missing. Only a
        file with a validator (ETag, Last-Modified) is resumed: If-Range makes a changed file come back whole."""
        if self.file_url is None or transfer.size == 0 or not transfer.validator:
            transfer.restart()
            if self.file_id:
                response = _open_drive_file(self, drive_download_url(self.file_id))
            else:
                response = _request(self.opener, self.url, self.watchdog)
            self.file_url = response.geturl()
            return response
        headers = {"Range": f"bytes={transfer.size}-", "If-Range": transfer.validator}
        return _request(self.opener, self.file_url, self.watchdog, headers)


def _attempt(session: _Session, transfer: _Transfer, check_text: bool) -> Optional[Exception]:
    """One request; returns None when the file is complete, else the (transient) error to retry after."""
    try:
        with session.open(transfer) as response:
            transfer.start(response)
            transfer.copy(response, check_text, session.watchdog)
        if transfer.complete():
            return None
        return ConnectionError(f"connection closed after {transfer.size} of {transfer.total} bytes")
    except (_Restart, download_limits.LimitReached, UserError):
        raise
    except Exception as err:  # noqa: BLE001 -- sorted below: the watchdog's reason, transient or final
        session.watchdog.check()  # a connection the watchdog closed fails in many ways: give its reason
        if isinstance(err, urllib.error.HTTPError) and err.code == 416:  # our Range lies past the end
            transfer.restart()
        if isinstance(err, (urllib.error.URLError, OSError, http.client.HTTPException, ValueError)) and \
                download_limits.is_transient(err):
            return err
        raise UserError(f"{session.url}: download failed ({printable(str(err) or type(err).__name__, 200)})"
                        f"{session.hint}") from None


def _fetch_into(f, url: str, sha256: Optional[str], num_attempts: int, verbose: bool, hint: str) -> None:
    """Write the file at `url` into the open binary file `f`, resuming after interruptions, within the limits."""
    limits = download_limits.Limits.from_environment()
    watchdog = download_limits.Watchdog(limits)
    session = _Session(url, hint, watchdog)
    transfer = _Transfer(f, url, session.source, verbose, limits)
    failures = 0  # in a row, without progress
    try:
        for attempt in range(num_attempts):
            size_before = transfer.size
            watchdog.new_attempt()
            try:
                error = _attempt(session, transfer, expects_binary(url))
            except _Restart:
                continue
            if error is None:
                break
            failures = 0 if transfer.size > size_before else failures + 1
            wait = download_limits.retry_wait(failures)
            if wait is None or attempt + 1 == num_attempts or time.monotonic() + wait > watchdog.deadline:
                raise UserError(f"{url}: download failed after {attempt + 1} attempt(s) ({printable(str(error), 200)})"
                                f"{hint}")
            watchdog.waiting()
            time.sleep(wait)
        else:
            raise UserError(f"{url}: download failed after {num_attempts} attempt(s) (the server kept restarting the "
                            f"file){hint}")
    except download_limits.LimitReached as err:
        raise UserError(f"{url}: download {err}; nothing was cached{hint}") from None
    finally:
        watchdog.close()
        transfer.bar.close()
    if sha256 is not None and transfer.hasher.hexdigest() != sha256:
        raise UserError(f"{url}: SHA-256 of the download is {transfer.hasher.hexdigest()}, expected {sha256}; "
                        "it was not cached or used")


def download_file(url: str, dest: str, sha256: Optional[str] = None, num_attempts: int = 10, verbose: bool = True,
                  hint: str = "") -> str:
    """Download `url` to `dest` through a temporary file beside it, renamed into place only when complete
    (and matching `sha256`, when given); the temporary file is removed on every failure, SIGTERM included (in
    the main thread). `hint` ends error messages (e.g. where to put the file by hand)."""
    assert num_attempts >= 1
    if verbose:
        print(f"Downloading {url}", file=sys.stderr, flush=True)
    atomic_write(dest, lambda f: _fetch_into(f, url, sha256, num_attempts, verbose, hint))
    return dest


# ----------------------------------------------------------------------------
# Hugging Face Hub.

def _hub_endpoint_hosts() -> set:
    hosts = set(HUB_HOSTS)
    if os.environ.get("HF_ENDPOINT"):  # a mirror's resolve/ links go through the library too
        hosts.add(urllib.parse.urlparse(os.environ["HF_ENDPOINT"]).netloc.lower())
    return hosts


def parse_hub_url(url: str) -> Optional[dict]:
    """hf://[datasets/|spaces/]OWNER/REPO/PATH[@REV] (or OWNER/REPO@REV/PATH) and
    https://huggingface.co/[datasets/|spaces/]OWNER/REPO/resolve/REV/PATH -> hf_hub_download kwargs, else None."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "hf":
        parts = (parsed.netloc + parsed.path).strip("/").split("/")
        resolve = False
    elif parsed.scheme in ("http", "https") and parsed.netloc.lower() in _hub_endpoint_hosts():
        parts = urllib.parse.unquote(parsed.path).strip("/").split("/")
        resolve = True
    else:
        return None
    repo_type = "model"
    if parts and parts[0] in HUB_REPO_TYPES:
        repo_type = parts.pop(0)[:-1]
    if resolve:
        if len(parts) < 5 or parts[2] != "resolve":
            return None
        return dict(repo_id="/".join(parts[:2]), revision=parts[3], filename="/".join(parts[4:]), repo_type=repo_type)
    if len(parts) < 3 or not all(parts):
        raise UserError(f"{url}: expected hf://OWNER/REPO/PATH[@REVISION]")
    owner, repo, path = parts[0], parts[1], "/".join(parts[2:])
    revision = None
    if "@" in repo:
        repo, revision = repo.split("@", 1)
    elif "@" in path:
        path, revision = path.rsplit("@", 1)
    return dict(repo_id=f"{owner}/{repo}", filename=path, revision=revision or None, repo_type=repo_type)


def _import_hub(url: str):
    try:
        import huggingface_hub  # here: an optional extra (pip install .[hub])
    except ImportError:
        raise UserError(f"{url}: Hugging Face Hub links need the huggingface_hub package: pip install .[hub] "
                        "(or pip install huggingface_hub)") from None
    return huggingface_hub


def hub_error(err: Exception, url: str) -> UserError:
    """A one-line error for what huggingface_hub raised (matched by class name: its modules move between versions)."""
    names = {cls.__name__ for cls in type(err).__mro__}
    detail = printable(str(err).splitlines()[0] if str(err) else type(err).__name__)
    if names & {"OfflineModeIsEnabled", "LocalEntryNotFoundError"}:
        return UserError(f"{url}: not in the Hugging Face cache, and the Hub cannot be reached (HF_HUB_OFFLINE "
                         f"or no network); run once online, or pass a local path ({detail})")
    if names & {"GatedRepoError", "RepositoryNotFoundError"}:
        return UserError(f"{url}: repository not found or not accessible; check the name, or log in "
                         f"(hf auth login, or set HF_TOKEN) if it is private or gated ({detail})")
    if names & {"RevisionNotFoundError", "EntryNotFoundError", "RemoteEntryNotFoundError"}:
        return UserError(f"{url}: no such file or revision in the repository ({detail})")
    return UserError(f"{url}: Hugging Face download failed ({type(err).__name__}: {detail})")


def hub_download(url: str) -> str:
    """The local path of a Hub file, downloaded through huggingface_hub (its cache, token and offline mode).

    Within the limits of every other download: its metadata request may wait at most the stall time, and the
    whole download the deadline ($SG2_DOWNLOAD_STALL_SECONDS, $SG2_DOWNLOAD_DEADLINE). The library has no overall
    deadline of its own, so it runs in a daemon thread that is left behind when the deadline passes: it ends with
    the process, and the library resumes its partial file on the next try.
    """
    spec = parse_hub_url(url)
    hub = _import_hub(url)
    limits = download_limits.Limits.from_environment()
    outcome = {}

    def fetch():
        try:
            outcome["path"] = hub.hf_hub_download(**spec, etag_timeout=limits.stall_seconds)
        except Exception as err:  # huggingface_hub raises many types (HTTP, offline, validation)
            outcome["error"] = err
    worker = threading.Thread(target=fetch, name="hub-download", daemon=True)
    worker.start()
    worker.join(limits.deadline)
    if worker.is_alive():
        raise UserError(f"{url}: not complete within the deadline of {limits.deadline:g} s ($SG2_DOWNLOAD_DEADLINE); "
                        "huggingface_hub resumes its partial file on the next try")
    if "error" in outcome:
        raise hub_error(outcome["error"], url) from outcome["error"]
    return outcome["path"]
