"""Atomic writes (dnnlib.output_files.atomic_write): readers never see half a file, a failed write keeps the old one.

Every file the package writes for later use (snapshots, caches, statistics, exports, downloads) goes through it.
"""
import os

import pytest

import dnnlib


def test_readers_see_the_earlier_file_until_the_new_one_is_complete(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"earlier contents")
    seen_while_writing = []

    def write(f):
        f.write(b"new")
        f.flush()
        seen_while_writing.append(path.read_bytes())  # another process reading meanwhile
        f.write(b" contents")

    dnnlib.util.atomic_write(str(path), write)
    assert seen_while_writing == [b"earlier contents"]
    assert path.read_bytes() == b"new contents"
    assert os.listdir(tmp_path) == ["out.bin"]  # no temporary file left behind


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_earlier_file_and_leaves_no_temporary(tmp_path, error):
    path = tmp_path / "snapshot.pkl"
    path.write_bytes(b"the last good snapshot")

    def write_half(f):
        f.write(b"half of a new one")
        raise error

    with pytest.raises(type(error)):
        dnnlib.util.atomic_write(str(path), write_half)
    assert path.read_bytes() == b"the last good snapshot"
    assert os.listdir(tmp_path) == ["snapshot.pkl"]


def test_a_new_file_appears_only_when_complete(tmp_path):
    path = tmp_path / "sub" / "stats.npz"

    def write(f):
        f.write(b"part")
        assert not path.exists()

    dnnlib.util.atomic_write(str(path), write)
    assert path.read_bytes() == b"part"
