"""Downloads through dnnlib.util.open_url against loopback stand-ins for Google Drive and file hosts.

Nothing leaves this machine: every URL points at a server on 127.0.0.1 started by the test.
"""
import hashlib
import os
import pickle

import numpy as np
import pytest

import dnnlib
from dnnlib import download
from helpers_http import Route, serve

FILE_ID = "1AbC-dEf_234"
UUID = "5e2b9c0a-77aa-4d1e-9b1e-1c2d3e4f5a6b"


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def payload():
    """3 MiB of random bytes: several read chunks, so a connection can drop in the middle."""
    return np.random.RandomState(0).bytes(3 << 20)


def virus_scan_page(base_url, file_id):
    return f"""<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<p>Google Drive can't scan this file for viruses. Download anyway?</p>
<form id="download-form" action="{base_url}/download" method="get">
<input type="submit" id="uc-download-link" value="Download anyway">
<input type="hidden" name="id" value="{file_id}"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="{UUID}">
</form></body></html>""".encode()


QUOTA_PAGE = b"""<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>
<p>Sorry, you can't view or download this file at this time.</p>
<p>Too many users have viewed or downloaded this file recently. Please try again later.</p></body></html>"""

DENIED_PAGE = b"""<!DOCTYPE html><html><head><title>Google Drive - You need access</title></head><body>
<p>You need access. Request access, or switch to an account with access.</p></body></html>"""


def drive_routes(base_url, file_id, body, drop_after=None, ranges=True):
    start = f"/download?id={file_id}&export=download"
    confirmed = f"/download?id={file_id}&export=download&confirm=t&uuid={UUID}"
    return {start: Route(virus_scan_page(base_url, file_id), content_type="text/html; charset=utf-8"),
            confirmed: Route(body, drop_after=drop_after, ranges=ranges)}


@pytest.fixture
def drive(monkeypatch):
    """A stand-in Drive: links name the loopback host, the download endpoint lives there too."""
    with serve({}) as server:
        host = server.base_url.split("://")[1]
        monkeypatch.setattr(download, "DRIVE_HOSTS", download.DRIVE_HOSTS | {host})
        monkeypatch.setattr(download, "DRIVE_DOWNLOAD_URL", server.base_url + "/download")
        yield server


def cache_entries(cache_dir):
    return sorted(os.listdir(cache_dir)) if os.path.isdir(cache_dir) else []


def test_drive_links_name_the_file_id():
    for link in [f"https://drive.google.com/file/d/{FILE_ID}/view?usp=sharing",
                 f"https://drive.google.com/open?id={FILE_ID}", f"https://drive.google.com/uc?id={FILE_ID}&export=download",
                 f"https://docs.google.com/uc?export=download&id={FILE_ID}"]:
        assert download.drive_file_id(link) == FILE_ID
    assert download.drive_file_id("https://example.org/file/d/x/view") is None
    assert download.drive_file_id("https://drive.google.com/drive/folders/xyz") is None


def test_drive_view_link_through_virus_scan_page_and_a_dropped_connection(drive, payload, tmp_path):
    drive.routes.update(drive_routes(drive.base_url, FILE_ID, payload, drop_after=len(payload) // 2))
    view_link = f"{drive.base_url}/file/d/{FILE_ID}/view?usp=sharing"
    cache_dir = str(tmp_path / "cache")
    path = dnnlib.util.open_url(view_link, cache_dir=cache_dir, return_filename=True, verbose=False,
                                sha256=hashlib.sha256(payload).hexdigest())
    with open(path, "rb") as f:
        assert hashlib.sha256(f.read()).digest() == hashlib.sha256(payload).digest()
    assert path == dnnlib.util.url_cache_path(view_link, cache_dir)  # keyed by the link the user gave
    assert cache_entries(cache_dir) == [os.path.basename(path)]      # no temporary files left behind

    file_requests = [r for r in drive.requests if "confirm=t" in r["path"]]
    assert [r["range"] for r in file_requests] == [None, f"bytes={len(payload) // 2}-"]  # resumed, not restarted
    assert sum(r["sent"] for r in file_requests) == len(payload)                          # every byte sent once
    assert not any(r["path"].startswith("/file/d/") for r in drive.requests)              # the view page is skipped

    count = len(drive.requests)
    with dnnlib.util.open_url(view_link, cache_dir=cache_dir, verbose=False) as f:
        assert f.read() == payload
    assert len(drive.requests) == count  # the second open reads the cache


def test_server_without_range_support_sends_the_file_again(drive, payload, tmp_path):
    drive.routes.update(drive_routes(drive.base_url, FILE_ID, payload, drop_after=len(payload) // 3, ranges=False))
    with dnnlib.util.open_url(f"{drive.base_url}/uc?id={FILE_ID}", cache_dir=str(tmp_path), verbose=False) as f:
        assert f.read() == payload


def test_legacy_confirm_token_link_is_followed(drive, payload, tmp_path):
    page = (b'<html><head><title>Google Drive - Virus scan warning</title></head><body>'
            b'<a id="uc-download-link" href="/uc?export=download&amp;confirm=Xy_9&amp;id=' + FILE_ID.encode() +
            b'">Download anyway</a></body></html>')
    drive.routes[f"/download?id={FILE_ID}&export=download"] = Route(page, content_type="text/html")
    drive.routes[f"/uc?export=download&confirm=Xy_9&id={FILE_ID}"] = Route(payload)
    with dnnlib.util.open_url(f"{drive.base_url}/open?id={FILE_ID}", cache_dir=str(tmp_path), verbose=False) as f:
        assert f.read() == payload


@pytest.mark.parametrize("page,status,message", [(QUOTA_PAGE, 200, "quota exceeded"),
                                                 (DENIED_PAGE, 403, "denies access")])
def test_drive_refusals_are_clear_and_leave_the_cache_empty(drive, tmp_path, page, status, message):
    drive.routes[f"/download?id={FILE_ID}&export=download"] = Route(page, status=status, content_type="text/html")
    cache_dir = str(tmp_path / "cache")
    link = f"{drive.base_url}/file/d/{FILE_ID}/view"
    with pytest.raises(dnnlib.util.UserError, match=message) as info:
        dnnlib.util.open_url(link, cache_dir=cache_dir, verbose=False)
    text = str(info.value)
    assert "\n" not in text and "by hand" in text and dnnlib.util.url_cache_path(link, cache_dir) in text
    assert cache_entries(cache_dir) == []


def test_unrecognised_drive_page_is_named_and_not_cached(drive, tmp_path):
    page = b"<!DOCTYPE html><html><head><title>Google Drive - Something new</title></head><body></body></html>"
    drive.routes[f"/download?id={FILE_ID}&export=download"] = Route(page, content_type="text/html")
    with pytest.raises(dnnlib.util.UserError, match=r'Google Drive returned a web page \("Google Drive - Something new"\)'):
        dnnlib.util.open_url(f"{drive.base_url}/file/d/{FILE_ID}/view", cache_dir=str(tmp_path), verbose=False)
    assert cache_entries(str(tmp_path)) == []


@pytest.mark.parametrize("body,content_type,what", [
    (b"<!doctype html>\n<html><head><title>Sign in</title></head></html>", "text/html", r'a web page \("Sign in"\)'),
    (b"<html><head><title>Sign in</title></head></html>", "application/octet-stream", r'a web page \("Sign in"\)'),
    (b'{"error": "Repository not found"}', "application/json", r'JSON \(\{"error": "Repository not found"\}\)'),
])
def test_text_where_a_checkpoint_is_expected_is_refused(tmp_path, body, content_type, what):
    with serve({"/models/net.pkl": Route(body, content_type=content_type)}) as server:
        with pytest.raises(dnnlib.util.UserError, match=what):
            dnnlib.util.open_url(server.base_url + "/models/net.pkl", cache_dir=str(tmp_path), verbose=False)
    assert cache_entries(str(tmp_path)) == []


def test_sha256_fragment_and_option(tmp_path, payload):
    digest = hashlib.sha256(payload).hexdigest()
    wrong = hashlib.sha256(b"something else").hexdigest()
    with serve({"/net.pkl": Route(payload)}) as server:
        url = server.base_url + "/net.pkl"
        with pytest.raises(dnnlib.util.UserError, match=f"expected {wrong}"):
            dnnlib.util.open_url(f"{url}#sha256={wrong}", cache_dir=str(tmp_path), verbose=False)
        assert cache_entries(str(tmp_path)) == []
        with pytest.raises(dnnlib.util.UserError, match="contradicts"):
            dnnlib.util.open_url(f"{url}#sha256={digest}", sha256=wrong, cache_dir=str(tmp_path), verbose=False)
        with pytest.raises(dnnlib.util.UserError, match="--sha256: 'abc' is not a SHA-256"):
            dnnlib.util.open_url(url, sha256="abc", cache_dir=str(tmp_path), verbose=False)
        path = dnnlib.util.open_url(f"{url}#sha256={digest.upper()}", cache_dir=str(tmp_path), verbose=False,
                                    return_filename=True)
        assert path == dnnlib.util.url_cache_path(url, str(tmp_path))  # the fragment is not part of the key
        # A cached file is checked too: a wrong digest refuses it, and the fresh download also fails.
        with pytest.raises(dnnlib.util.UserError, match=f"expected {wrong}"):
            dnnlib.util.open_url(url, sha256=wrong, cache_dir=str(tmp_path), verbose=False)
        assert open(path, "rb").read() == payload  # the good cache entry is still there
    local = tmp_path / "local.bin"
    local.write_bytes(payload)
    assert dnnlib.util.open_url(str(local), sha256=digest, return_filename=True) == str(local)
    with pytest.raises(dnnlib.util.UserError, match="not used"):
        dnnlib.util.open_url(str(local), sha256=wrong)
    assert local.read_bytes() == payload  # a local file is never touched


def test_wrong_sha256_is_refused_before_unpickling(tmp_path, compat_dir, monkeypatch):
    import legacy
    from training.checkpoint import unpickler
    fixture = os.path.join(compat_dir, "tiny_64x32.pkl")
    with open(fixture, "rb") as f:
        body = f.read()
    wrong, right = hashlib.sha256(b"x").hexdigest(), hashlib.sha256(body).hexdigest()

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling was attempted")
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path))
    with serve({"/tiny.pkl": Route(body)}) as server:
        url = server.base_url + "/tiny.pkl"
        with monkeypatch.context() as patch:
            patch.setattr(unpickler, "RestrictedUnpickler", refuse)
            patch.setattr(pickle, "load", refuse)
            with pytest.raises(dnnlib.util.UserError, match="SHA-256"):
                legacy.load_network(f"{url}#sha256={wrong}")
            with pytest.raises(dnnlib.util.UserError, match="SHA-256"):
                legacy.load_network(fixture, sha256=wrong)
        assert cache_entries(str(tmp_path / "downloads")) == []
        G = legacy.load_network(url, sha256=right)
    assert G.img_resolution == 64


def test_cached_web_page_from_older_versions_is_replaced(tmp_path, payload):
    with serve({"/net.pkl": Route(payload)}) as server:
        url = server.base_url + "/net.pkl"
        stale = dnnlib.util.url_cache_path(url, str(tmp_path))
        os.makedirs(str(tmp_path), exist_ok=True)
        with open(stale, "wb") as f:
            f.write(b"<html><head><title>Google Drive - Virus scan warning</title></head></html>")
        with dnnlib.util.open_url(url, cache_dir=str(tmp_path), verbose=False) as f:
            assert f.read() == payload
        assert len(server.requests) == 1


def test_progress_bar_shows_size_and_rate(tmp_path, payload, capsys):
    with serve({"/net.pkl": Route(payload)}) as server:
        dnnlib.util.open_url(server.base_url + "/net.pkl", cache_dir=str(tmp_path), verbose=True).close()
    err = capsys.readouterr().err
    assert "Downloading" in err and "net.pkl" in err and "3.00M" in err and "B/s" in err


def test_missing_file_and_server_errors_name_the_cache_path(tmp_path):
    with serve({}) as server:
        url = server.base_url + "/missing.pkl"
        with pytest.raises(dnnlib.util.UserError, match="404") as info:
            dnnlib.util.open_url(url, cache_dir=str(tmp_path), verbose=False)
    assert dnnlib.util.url_cache_path(url, str(tmp_path)) in str(info.value)
    assert cache_entries(str(tmp_path)) == []


def test_text_detection_leaves_binary_formats_alone(tmp_path):
    zip_head = b"PK\x03\x04" + bytes(60)
    pickle_head = pickle.dumps({"G": None}, protocol=2)
    safetensors_head = (12).to_bytes(8, "little") + b'{"a": 1}    '
    for head in (zip_head, pickle_head, safetensors_head, bytes(100)):
        assert download.describe_text_response(head, "application/octet-stream") is None
    assert download.describe_text_response(b"[1, 2]", None).startswith("JSON")
    assert download.expects_binary("https://x.org/a/b.pkl") and not download.expects_binary("https://x.org/info.json")
