"""The small helpers the bounded readers and atomic writers are built from, against independent references."""
import io
import os
import signal
import struct
import tempfile
import time
import zipfile

import numpy as np
import PIL.Image
import pytest

import dnnlib
import hostile_files as hf
from dnnlib import array_files, image_files, output_files
from latent import video


# ----------------------------------------------------------------------------
# atomic_output / atomic_write / sigterm_raises.

def test_atomic_output_replaces_on_success_and_removes_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with dnnlib.util.atomic_output(str(target)) as tmp:
            open(tmp, "wb").write(b"half")
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == ["out.bin"] and target.read_bytes() == b"old"
    with dnnlib.util.atomic_output(str(target), suffix=".mp4") as tmp:
        assert tmp.endswith(".mp4") and os.path.dirname(tmp) == str(tmp_path)
        open(tmp, "wb").write(b"new")
    assert os.listdir(tmp_path) == ["out.bin"] and target.read_bytes() == b"new"


def test_atomic_output_of_a_folder(tmp_path):
    with dnnlib.util.atomic_output(str(tmp_path / "data"), folder=True) as tmp:
        open(os.path.join(tmp, "a.txt"), "w").write("x")
    assert os.listdir(tmp_path / "data") == ["a.txt"]


def test_write_errors_name_the_target_not_the_temporary(tmp_path):
    def full(f):
        f.write(b"some")
        raise OSError(28, "No space left on device")
    with pytest.raises(OSError) as info:
        dnnlib.util.atomic_write(str(tmp_path / "x.png"), full)
    assert (info.value.errno, info.value.filename) == (28, str(tmp_path / "x.png"))
    assert os.listdir(tmp_path) == []
    with pytest.raises(FileNotFoundError) as info:  # an error about another file keeps its name
        dnnlib.util.atomic_write(str(tmp_path / "y.png"), lambda f: open(tmp_path / "missing"))
    assert info.value.filename == str(tmp_path / "missing")


def test_sigterm_raises_only_where_the_default_would_kill():
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with pytest.raises(SystemExit) as info:
            with dnnlib.util.sigterm_raises():
                os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next line
        assert info.value.code == 128 + signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored
        seen = []
        signal.signal(signal.SIGTERM, lambda *_: seen.append(1))  # someone's own handler is kept
        with dnnlib.util.sigterm_raises():
            os.kill(os.getpid(), signal.SIGTERM)
        assert seen == [1]
    finally:
        signal.signal(signal.SIGTERM, previous)


# ----------------------------------------------------------------------------
# Zip end records and .npy headers.

def test_zip_directory_matches_zipfiles_listing(tmp_path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(7):
            archive.writestr(f"m{i}.npy", hf.npy_bytes(np.zeros(i)))
        archive.comment = b"c" * 1000
    with open(path, "rb") as f:
        entries, directory_bytes = array_files.zip_directory(f)
    with zipfile.ZipFile(path) as archive:
        assert entries == len(archive.infolist())
        expected = sum(46 + len(info.filename.encode()) + len(info.extra) + len(info.comment)
                       for info in archive.infolist())
    assert directory_bytes == expected


@pytest.mark.slow
def test_zip_directory_reads_zip64_records(tmp_path):
    path = tmp_path / "many.npz"
    with zipfile.ZipFile(path, "w") as archive:  # more than 65535 members: zipfile writes the zip64 end record
        for i in range(65600):
            archive.writestr(f"{i}.npy", b"")
    with open(path, "rb") as f:
        assert array_files.zip_directory(f)[0] == 65600
    with pytest.raises(dnnlib.util.UserError, match="listing 65600 members"):
        array_files.read_arrays(str(path))


def test_an_npz_of_many_members_is_refused_before_its_listing_is_read(tmp_path):
    members = {f"{i}.npy": hf.stored(b"") for i in range(array_files.MAX_ZIP_ENTRIES + 1)}
    path = hf.write_zip(tmp_path / "many.npz", members)
    with pytest.raises(dnnlib.util.UserError, match=f"listing {array_files.MAX_ZIP_ENTRIES + 1} members"):
        array_files.read_arrays(path)


@pytest.mark.parametrize("array", [np.arange(12, dtype=">f8").reshape(3, 4), np.asfortranarray(np.ones([2, 3])),
                                   np.arange(5, dtype=np.uint16), np.zeros([0, 8], np.float32)])
def test_read_npy_agrees_with_numpy(tmp_path, array):
    np.save(tmp_path / "a.npy", array)
    ours = array_files.read_arrays(str(tmp_path / "a.npy"))["w"]
    assert ours.dtype == np.float32 and np.array_equal(ours, np.load(tmp_path / "a.npy").astype(np.float32))


@pytest.mark.parametrize("descr,needle", [("|O", "object"), ("<c8", "complex64"), ("|b1", "bool"), ("<U3", "<U3")])
def test_npy_of_other_dtypes_is_refused_by_its_header(tmp_path, descr, needle):
    (tmp_path / "a.npy").write_bytes(hf.npy_header([4], descr) + bytes(64))
    with pytest.raises(dnnlib.util.UserError, match=f"holds .*{needle}"):
        array_files.read_arrays(str(tmp_path / "a.npy"))


def test_a_member_whose_data_is_cut_short_is_named(tmp_path):
    data, crc, size = hf.deflated_zeros(1, prefix=hf.npy_header([1 << 20]))  # declares 4 MiB, holds 1 MiB
    path = hf.write_zip(tmp_path / "short.npz", {"w.npy": (data, crc, size)})
    with pytest.raises(dnnlib.util.UserError, match="declares .* but holds"):
        array_files.read_arrays(path)


# ----------------------------------------------------------------------------
# Image headers and sizes.

def test_header_reader_reads_once_and_stops_at_its_limit():
    class Counting(io.BytesIO):
        reads = 0

        def read(self, size=-1):
            Counting.reads += 1
            return super().read(size)
    reader = image_files.HeaderReader(Counting(b"line one\nline two\n" + bytes(100)), limit=64)
    assert reader.readline() == b"line one\n" and reader.read(4) == b"line"
    reader.seek(0)
    before = Counting.reads
    assert reader.read(9) == b"line one\n" and Counting.reads == before  # from what was kept
    with pytest.raises(image_files.HeaderTooLong):
        reader.read(100)


@pytest.mark.parametrize("mode,bands,bytes_per_band", [("RGB", 3, 1), ("L", 1, 1), ("RGBA", 4, 1), ("I;16", 1, 2),
                                                       ("CMYK", 4, 1)])
def test_max_file_bytes_is_twice_the_pixels_plus_metadata(mode, bands, bytes_per_band):
    assert image_files.max_file_bytes(100, 50, mode) == 2 * 100 * 50 * bands * bytes_per_band + \
        image_files.METADATA_BYTES


def test_worst_case_pngs_and_jpegs_fit_their_bound(tmp_path):
    noise = np.random.RandomState(0).randint(0, 256, [64, 32, 3], np.uint8)  # incompressible
    for fmt, kwargs in (("PNG", dict(compress_level=0)), ("JPEG", dict(quality=100, subsampling=0))):
        buffer = io.BytesIO()
        PIL.Image.fromarray(noise).save(buffer, format=fmt, **kwargs)
        assert len(buffer.getvalue()) < image_files.max_file_bytes(64, 32, "RGB") - image_files.METADATA_BYTES


# ----------------------------------------------------------------------------
# mp4 completeness.

def _box(kind, payload=b""):
    return struct.pack(">I", 8 + len(payload)) + kind + payload


@pytest.mark.parametrize("data,complete", [
    (_box(b"ftyp", b"isom") + _box(b"mdat", bytes(10)) + _box(b"moov", bytes(20)), True),
    (_box(b"ftyp", b"isom") + _box(b"mdat", bytes(10)) + _box(b"moov", bytes(20))[:-5], False),  # cut short
    (_box(b"ftyp", b"isom") + _box(b"mdat", bytes(10)), False),                                 # no moov
    (_box(b"ftyp", b"isom") + struct.pack(">I", 1) + b"mdat" + struct.pack(">Q", 16 + 4) + bytes(4)
     + _box(b"moov"), True),                                                                    # 64-bit size
])
def test_mp4_complete(tmp_path, data, complete):
    (tmp_path / "v.mp4").write_bytes(data)
    assert video.mp4_complete(str(tmp_path / "v.mp4")) == complete


def test_atomic_output_sweeps_the_temporaries_a_killed_write_left(tmp_path):
    day_and_more = time.time() - output_files.STALE_TEMPORARY_SECONDS - 60

    def left(folder, name, when=None, is_folder=False):
        path = folder / name
        path.mkdir() if is_folder else path.write_bytes(b"half")
        if when is not None:
            os.utime(path, (when, when))
        return name

    def killed_write(folder, target, suffix=""):  # what atomic_output leaves when SIGKILL ends the write
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target}.tmp-", suffix=suffix)
        os.close(fd)
        return left(folder, os.path.basename(tmp), day_and_more)
    runs = tmp_path / "runs"
    runs.mkdir()
    stale = [killed_write(runs, "snapshot.pkl"), killed_write(runs, "other.pkl"), killed_write(runs, "clip.mp4", ".mp4")]
    kept = [left(runs, ".snapshot.pkl.tmp-xyz_9876"),                       # being written now, maybe on another host
            left(runs, ".snapshot.pkl.tmp-fold_123", day_and_more, True),   # folders are never swept
            left(runs, ".snapshot.pkl.tmp-notours-at-all", day_and_more),   # not a name mkstemp gives
            left(runs, "snapshot.pkl.tmp-abc_1234", day_and_more),          # not hidden: not ours
            left(runs, "notes.txt", day_and_more)]
    dnnlib.util.atomic_write(str(runs / "snapshot.pkl"), lambda f: f.write(b"whole"))
    assert sorted(os.listdir(runs)) == sorted(kept + ["snapshot.pkl"]) and (runs / "snapshot.pkl").read_bytes() == b"whole"
    # Once a process: the next write into the folder does not list it again (a tool may write thousands there).
    later = killed_write(runs, "snapshot.pkl")
    dnnlib.util.atomic_write(str(runs / "next.pkl"), lambda f: f.write(b"x"))
    assert later in os.listdir(runs) and not set(stale) & set(os.listdir(runs))
