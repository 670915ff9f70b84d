"""Loading a checkpoint never runs code from it, and bad files fail with errors naming the file."""
import io
import os
import pickle
import subprocess
import sys

import pytest
import torch

import hostile_files
import legacy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _ShellPayload:
    """Unpickling this runs a shell command (the classic malicious pickle)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


_read_fixture = hostile_files.read_fixture  # The fixture's records as editable stand-ins.


def _records(obj):
    yield obj
    for child in obj.meta["state"].get("_modules", {}).values():
        if child is not None:
            yield from _records(child)


def _load_bytes(data, name="test.pkl"):
    stream = io.BytesIO(data)
    stream.name = name
    return legacy.load_network_pkl(stream)


def test_shell_payload_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    data = pickle.dumps({"G_ema": _ShellPayload(marker)})
    with pytest.raises(legacy.CheckpointError, match=r"evil\.pkl.*posix\.system|evil\.pkl.*os\.system"):
        _load_bytes(data, "evil.pkl")
    assert not marker.exists()


def test_payload_inside_tensor_storage_is_refused(tmp_path):
    # torch.storage._load_from_bytes is admitted, but its bytes are decoded weights-only.
    marker = tmp_path / "pwned"
    blob = pickle.dumps(_ShellPayload(marker))
    data = pickle.dumps({"G_ema": _StorageCall(blob)})
    with pytest.raises(legacy.CheckpointError):
        _load_bytes(data)
    assert not marker.exists()


class _StorageCall:
    def __init__(self, blob):
        self.blob = blob

    def __reduce__(self):
        return (torch.storage._load_from_bytes, (self.blob,))


@pytest.mark.slow
def test_module_src_payload_is_ignored(compat_dir, tmp_path):
    marker = tmp_path / "pwned"
    data = _read_fixture(compat_dir)
    for key in ("G", "D", "G_ema"):
        for record in _records(data[key]):
            record.meta["module_src"] = f"import os\nos.system('touch {marker}')\n"
    evil = tmp_path / "module_src_payload.pkl"
    evil.write_bytes(pickle.dumps(data, protocol=4))

    with open(evil, "rb") as f:
        nets = legacy.load_network_pkl(f)
    assert type(nets["G_ema"]).__name__ == "Generator"
    assert nets["G_ema"].img_height == 64
    assert not marker.exists()

    # Control: the trusting path really would run it, so the assertion above can fail.
    code = f"import legacy; legacy.load_network_pkl(open({str(evil)!r}, 'rb'), allow_code=True)"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False, capture_output=True)
    assert marker.exists()


def test_truncated_file(compat_dir, tmp_path):
    data = (open(os.path.join(compat_dir, "tiny_64x32.pkl"), "rb").read())
    path = tmp_path / "half.pkl"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(legacy.CheckpointError, match=r"half\.pkl.*truncated"):
        with open(path, "rb") as f:
            legacy.load_network_pkl(f)


@pytest.mark.parametrize("payload", [b"this is not a pickle at all", pickle.dumps([1, 2, 3]), pickle.dumps({"x": 1})])
def test_not_a_checkpoint(tmp_path, payload):
    path = tmp_path / "notes.pkl"
    path.write_bytes(payload)
    with pytest.raises(legacy.CheckpointError, match=r"notes\.pkl"):
        with open(path, "rb") as f:
            legacy.load_network_pkl(f)


def _write_modified(tmp_path, compat_dir, edit):
    data = _read_fixture(compat_dir)
    edit(data)
    path = tmp_path / "edited.pkl"
    path.write_bytes(pickle.dumps(data, protocol=4))
    return path


def _mapping_fc0(data):
    return data["G_ema"].meta["state"]["_modules"]["mapping"].meta["state"]["_modules"]["fc0"].meta["state"]


@pytest.mark.parametrize("edit,message", [
    (lambda d: _mapping_fc0(d)["_parameters"].pop("bias"), r"lacks tensor.*mapping\.fc0\.bias"),
    (lambda d: _mapping_fc0(d)["_parameters"].__setitem__("extra", torch.nn.Parameter(torch.zeros(3))),
     r"unexpected tensor.*mapping\.fc0\.extra"),
    (lambda d: _mapping_fc0(d)["_parameters"].__setitem__("bias", torch.nn.Parameter(torch.zeros(7))),
     r"mapping\.fc0\.bias.*shape \[7\]"),
])
@pytest.mark.slow
def test_tensor_mismatch_is_named(tmp_path, compat_dir, edit, message):
    path = _write_modified(tmp_path, compat_dir, edit)
    with pytest.raises(legacy.CheckpointError, match=r"edited\.pkl.*" + message):
        with open(path, "rb") as f:
            legacy.load_network_pkl(f)


def test_unknown_class_is_named(tmp_path, compat_dir):
    def edit(data):
        data["G_ema"].meta["class_name"] = "FancyGenerator"
    path = _write_modified(tmp_path, compat_dir, edit)
    with pytest.raises(legacy.CheckpointError, match="FancyGenerator"):
        with open(path, "rb") as f:
            legacy.load_network_pkl(f)


def test_any_subset_of_keys_loads(tmp_path, compat_dir):
    def edit(data):
        for key in ("G", "D", "training_set_kwargs", "augment_pipe"):
            del data[key]
    path = _write_modified(tmp_path, compat_dir, edit)
    with open(path, "rb") as f:
        nets = legacy.load_network_pkl(f)
    assert nets["G"] is None and nets["D"] is None and nets["training_set_kwargs"] is None
    assert nets["augment_pipe"] is None and nets["G_ema"] is not None
