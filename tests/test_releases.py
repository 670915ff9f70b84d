"""Named releases (--network=shhq-1.0-512): fetched from a loopback stand-in for Google Drive, the SHA-256 of the
first download recorded, and every later use checked against it."""
import hashlib
import os

import pytest

import legacy
from dnnlib import download
from helpers_cli import run_tool
from sg2_cli import generate
from test_download import drive, drive_routes, no_proxy  # noqa: F401 (fixtures)
from training.checkpoint import releases

NAME = "shhq-1.0-512"


@pytest.fixture
def release(drive, compat_dir, tmp_path, monkeypatch):  # noqa: F811 (the drive fixture)
    """The stand-in Drive serves the tiny reference checkpoint under the release's file ID; an empty cache."""
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "cache"))
    body = open(os.path.join(compat_dir, "tiny_64x32.pkl"), "rb").read()
    drive.routes.update(drive_routes(drive.base_url, releases.RELEASES[NAME].drive_id, body))
    return drive, body


def generate_seed0(tmp_path, *extra):
    return run_tool(generate.main, [f"--network={NAME}", "--seeds=0", f"--outdir={tmp_path}/out", "--force",
                                    "--device=cpu", *extra])


def file_requests(server):
    return [r for r in server.requests if "confirm=t" in r["path"]]


def test_first_download_records_the_sha256_and_later_uses_check_it(release, tmp_path):
    server, body = release
    digest = hashlib.sha256(body).hexdigest()
    status, out, err = generate_seed0(tmp_path)
    assert status == 0, err
    assert f"first download, SHA-256 {digest}" in out
    assert releases.recorded_sha256(NAME) == digest and open(releases.record_path(NAME)).read() == digest + "\n"
    assert len(file_requests(server)) == 1

    status, out, _ = generate_seed0(tmp_path)  # from the cache, checked, not fetched again
    assert status == 0 and "first download" not in out and len(file_requests(server)) == 1
    G = legacy.load_network(NAME)  # the names work from Python too
    assert G.img_height == 64 and G.img_width == 32

    status, out, _ = run_tool(generate.main, ["--list-networks"])
    assert status == 0 and f"{NAME:<14s} SHHQ-1.0_sg2_512.pkl" in out and f"sha256 {digest}" in out
    assert "shhq-1.0-1024" in out and "not downloaded yet" in out


@pytest.mark.slow
def test_a_changed_file_is_refused(release, tmp_path):
    server, body = release
    assert generate_seed0(tmp_path)[0] == 0
    (entry,) = [os.path.join(tmp_path, "cache", "downloads", n) for n in os.listdir(tmp_path / "cache" / "downloads")]
    with open(entry, "r+b") as f:  # the cached copy damaged: fetched again, and the same file is fine
        f.seek(1000)
        f.write(b"\0\0\0\0")
    assert generate_seed0(tmp_path)[0] == 0 and len(file_requests(server)) == 2

    other = body[:-1] + b"!"  # Drive now serves another file under the same ID
    server.routes.update(drive_routes(server.base_url, releases.RELEASES[NAME].drive_id, other))
    os.remove(entry)
    status, _out, err = generate_seed0(tmp_path)
    last = err.strip().splitlines()[-1]  # after the download's progress lines, one line of error
    assert status == 1 and last.startswith("Error: ") and "SHA-256 of the download is" in last
    assert releases.recorded_sha256(NAME) in last and not os.path.exists(entry)  # not cached, not used

    status, _out, err = generate_seed0(tmp_path, "--sha256=" + "0" * 64)  # a hash given by hand is checked too
    assert status == 1 and "expected " + "0" * 64 in err
