"""hf:// and huggingface.co resolve/ links through huggingface_hub, against a loopback stand-in for the Hub.

The library reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE when it is imported, so each check runs in a
fresh process with those set; the stand-in server lives in this process on 127.0.0.1.
"""
import hashlib
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import dnnlib
from dnnlib import download
from helpers_http import Route, serve

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMIT = "0123456789abcdef0123456789abcdef01234567"

# Opens each URL given on the command line; prints one JSON line per URL: {"path": ...} or {"error": ...}.
OPENER = """
import json, sys
import dnnlib
for url in sys.argv[1:]:
    try:
        print(json.dumps(dict(path=dnnlib.util.open_url(url, return_filename=True, verbose=False))))
    except dnnlib.util.UserError as err:
        print(json.dumps(dict(error=str(err))))
"""


def open_in_fresh_process(urls, tmp_path, endpoint, offline=False, **extra_env):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING")) and "proxy" not in k.lower()}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1", no_proxy="127.0.0.1", PYTHONPATH=ROOT,
               DNNLIB_CACHE_DIR=str(tmp_path / "dnnlib"))
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    env.update(extra_env)
    proc = subprocess.run([sys.executable, "-c", OPENER] + list(urls), env=env, cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def hub_route(body):
    """What the Hub's resolve endpoint answers: the file, with the commit and ETag headers the library reads."""
    return Route(body, headers={"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha256(body).hexdigest()}"'})


def test_hub_links_parse():
    assert download.parse_hub_url("hf://owner/repo/nets/g.pkl") == dict(
        repo_id="owner/repo", filename="nets/g.pkl", revision=None, repo_type="model")
    assert download.parse_hub_url("hf://owner/repo/g.pkl@v1.0")["revision"] == "v1.0"
    assert download.parse_hub_url("hf://owner/repo@main/g.pkl") == dict(
        repo_id="owner/repo", filename="g.pkl", revision="main", repo_type="model")
    assert download.parse_hub_url("hf://datasets/owner/stats/shhq.npz")["repo_type"] == "dataset"
    assert download.parse_hub_url("https://huggingface.co/owner/repo/resolve/abc123/sub/g.pkl?download=true") == dict(
        repo_id="owner/repo", filename="sub/g.pkl", revision="abc123", repo_type="model")
    assert download.parse_hub_url("https://huggingface.co/owner/repo/blob/main/g.pkl") is None
    assert download.parse_hub_url("https://example.org/owner/repo/resolve/main/g.pkl") is None
    with pytest.raises(dnnlib.util.UserError, match="hf://OWNER/REPO/PATH"):
        download.parse_hub_url("hf://owner/g.pkl")


def test_missing_library_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes `import huggingface_hub` fail
    with pytest.raises(dnnlib.util.UserError, match=r"^hf://owner/repo/g.pkl: .* need the huggingface_hub package: pip install \.\[hub\]"):
        dnnlib.util.open_url("hf://owner/repo/g.pkl")


@pytest.mark.slow
def test_hub_download_then_offline_from_its_cache(tmp_path):
    pytest.importorskip("huggingface_hub")
    body = np.random.RandomState(1).bytes(200000)
    digest = hashlib.sha256(body).hexdigest()
    routes = {"/owner/repo/resolve/main/g.pkl": hub_route(body), "/owner/repo/resolve/v1/g.pkl": hub_route(body),
              # The Hub marks a missing file with an error-code header.
              "/owner/repo/resolve/main/missing.pkl": Route(b"Entry not found", status=404, content_type="text/plain",
                                                            headers={"X-Error-Code": "EntryNotFound",
                                                                     "X-Repo-Commit": COMMIT})}
    with serve(routes) as server:
        endpoint = server.base_url
        online = open_in_fresh_process(["hf://owner/repo/g.pkl", f"{endpoint}/owner/repo/resolve/v1/g.pkl",
                                        "hf://owner/repo/missing.pkl"], tmp_path, endpoint)
        asked = [r["path"] for r in server.requests]
    first, by_resolve_url, missing = online
    with open(first["path"], "rb") as f:
        assert f.read() == body
    assert first["path"].startswith(str(tmp_path / "hf_home"))  # the library's cache, not ours
    # The resolve/ URL of revision v1 went through the library too: one commit, so the same snapshot file.
    assert "/owner/repo/resolve/v1/g.pkl" in asked and by_resolve_url["path"] == first["path"]
    assert "no such file or revision" in missing["error"]

    # The server is gone: offline mode serves the cached file, checks its digest, and names what is missing.
    offline = open_in_fresh_process([f"hf://owner/repo/g.pkl#sha256={digest}",
                                     f"hf://owner/repo/g.pkl#sha256={'0' * 64}", "hf://owner/repo/other.pkl"],
                                    tmp_path, endpoint, offline=True)
    assert offline[0] == first
    assert "expected " + "0" * 64 in offline[1]["error"]
    assert "not in the Hugging Face cache" in offline[2]["error"] and "HF_HUB_OFFLINE" in offline[2]["error"]


def trickling_hub_route(body, seconds_per_byte=1.0):
    """The Hub's answer for a file whose metadata comes at once and whose bytes then come one a second: never a
    stall of the library's 10 s read timeout, never done within a short deadline."""
    def answer(handler, entry):
        handler.send_response(200)
        for name, value in hub_route(body).headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Content-Type", "application/octet-stream")
        handler.end_headers()
        if handler.command == "GET":
            for byte in body:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                entry["sent"] += 1
                time.sleep(seconds_per_byte)
    return Route(body, custom=answer)


@pytest.mark.slow
def test_hub_download_keeps_the_download_deadline(tmp_path):
    pytest.importorskip("huggingface_hub")
    body = np.random.RandomState(2).bytes(1000)
    with serve({"/owner/repo/resolve/main/slow.pkl": trickling_hub_route(body)}) as server:
        result, = open_in_fresh_process(["hf://owner/repo/slow.pkl"], tmp_path, server.base_url,
                                        SG2_DOWNLOAD_DEADLINE="3")
        got = [entry for entry in server.requests if entry["method"] == "GET"]
    assert result["error"].startswith("hf://owner/repo/slow.pkl: not complete within the deadline of 3 s "
                                      "($SG2_DOWNLOAD_DEADLINE)")
    assert got and 0 < got[0]["sent"] < len(body)  # it was downloading, and was cut off
