"""The checkpoint loader against hostile and broken files: refused in bounded time and memory, one-line errors.

Every hostile file is loaded in one separate process (a hash bomb that got through would hang it;
the subprocess timeout is the only hard limit). Times and peak memory are printed, not asserted.
"""
import json
import os
import pickle
import re
import subprocess
import sys

import pytest
import torch

import dnnlib
import hostile_files as hf
import legacy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _edit(edit):
    return lambda _compat_dir: hf.tiny_checkpoint(edit)


def _set_kwargs(key, path, value):
    """Edit: set G_ema's (or another network's) constructor argument at `path` (e.g. 'synthesis_kwargs.channel_max')."""
    def edit(data):
        kwargs = data[key].meta["state"]["_init_kwargs"]
        *parents, last = path.split(".")
        for parent in parents:
            kwargs = kwargs[parent]
        kwargs[last] = value
    return _edit(edit)


def _fc(**kwargs):
    return lambda _compat: hf.record_checkpoint("FullyConnectedLayer", {"_init_kwargs": kwargs})


def _gen(**kwargs):
    base = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3)
    return lambda _compat: hf.record_checkpoint("Generator", {"_init_kwargs": dict(base, **kwargs)})


# name -> (file bytes from the compat dir, what the one-line error must say after the file name)
CASES = {
    "hash_bomb": (lambda _c: hf.hash_bomb(60), r"dict key is a tuple"),
    "storage_blob_hash_bomb": (lambda _c: hf.storage_blob_bomb(), r"tensor storage: .*dict key is a tuple"),
    "shared_list_bomb": (lambda _c: hf.shared_list_bomb(60), r"expand to more than"),
    "deep_list": (lambda _c: hf.deep_list(5000), r"nested more than"),
    "cyclic_list": (lambda _c: hf.cyclic_list(), r"reference cycle"),
    "memo_index_bomb": (lambda _c: hf.memo_index_bomb(), r"memo index .* out of range"),
    "huge_declared_bytes": (lambda _c: hf.huge_declared_bytes(), r"truncated"),
    "deep_modules": (lambda _c: hf.deep_modules(5000), r"nested more than"),
    "cyclic_modules": (lambda _c: hf.cyclic_modules(), r"reference cycle"),
    "missing_class_name": (lambda _c: hf.record_checkpoint(None), r"without a class_name"),
    "init_kwargs_not_dict": (lambda _c: hf.record_checkpoint("Generator", {"_init_kwargs": [1, 2]}),
                             r"_init_kwargs that is not a dict"),
    "parameters_not_dict": (lambda _c: hf.record_checkpoint("FullyConnectedLayer", {"_parameters": "weights"}),
                            r"_parameters that is not a dict"),
    "newobj_build_record": (lambda _c: hf.newobj_record(), r"with NEWOBJ"),
    "negative_kernel": (lambda _c: hf.record_checkpoint("Conv2dLayer", {"_init_kwargs": dict(
        in_channels=3, out_channels=3, kernel_size=-3)}), r"kernel_size=-3 is not an integer from 1"),
    "unknown_activation": (_fc(in_features=4, out_features=4, activation="evil\x1b[31m"),
                           r"activation='evil\\x1b\[31m' is not one of"),
    "fc_20000": (_fc(in_features=20000, out_features=20000), r"in_features=20000 is not an integer from 0 to 4096"),
    "fc_4096_without_tensors": (_fc(in_features=4096, out_features=4096), r"would allocate more than"),
    "num_layers_300000": (lambda _c: hf.record_checkpoint("MappingNetwork", {"_init_kwargs": dict(
        z_dim=8, c_dim=0, w_dim=8, num_ws=2, num_layers=300000)}), r"num_layers=300000"),
    "resolution_2_20": (_gen(img_resolution=2 ** 20), r"img_resolution=1048576"),
    "resolution_not_power_of_two": (_gen(img_resolution=48), r"img_resolution=48 is not a power of two"),
    "z_dim_1e9": (_gen(z_dim=10 ** 9), r"z_dim=1000000000"),
    "channel_base_2_40": (_gen(synthesis_kwargs=dict(channel_base=2 ** 40)), r"channel_base=1099511627776"),
    "resolution_4096_for_16x8_tensors": (_set_kwargs("G_ema", "img_resolution", 4096), r"would allocate more than"),
    "channels_4096_for_thin_tensors": (_set_kwargs("G_ema", "synthesis_kwargs", dict(channel_base=2 ** 22,
                                                                                        channel_max=4096)),
                                       r"would allocate more than"),
    "channels_16_for_thin_tensors": (_set_kwargs("G_ema", "synthesis_kwargs.channel_max", 16),  # Built, compared.
                                     r"tensor 'synthesis.b4.const' has shape \[8, 4, 2\], expected \[16, 4, 2\]"),
    "class_name_with_escapes": (_edit(lambda d: d["G_ema"].meta.__setitem__(
        "class_name", "Gen\x1b[2J\nerator")), r"Gen\\x1b\[2J\\nerator"),
    "dataset_class_from_file": (_edit(lambda d: d.__setitem__("training_set_kwargs", dict(
        class_name="hostile_files.create_marker", path=".", marker="never"))),
        r"class_name 'hostile_files.create_marker' is not one of this package's classes"),
    "negative_cur_nimg": (lambda c: _with_progress(c, cur_nimg=-5), r"cur_nimg is not an integer from 0"),
    "augment_kwargs_foreign_class": (_edit(lambda d: d.__setitem__("augment_kwargs", dict(
        class_name="subprocess.Popen", args="touch x"))), r"'augment_kwargs': class_name 'subprocess.Popen'"),
    "nested_class_name_in_extra_entry": (_edit(lambda d: d.__setitem__("extras", {"a": [dict(
        class_name="builtins.exec")]})), r"'extras'.a\[0\]: class_name 'builtins.exec'"),
}


def _with_progress(_compat_dir, **changes):
    progress = dict(version=1, cur_nimg=0, cur_tick=0, batch_idx=0, tick_start_nimg=0, num_gpus=1, batch_size=4,
                    random_seed=0, optimizers={}, pl_mean=torch.zeros([]), ada=None,
                    rng=dict(torch=torch.get_rng_state(), cuda=[], numpy=["MT19937", [0] * 624, 624, 0, 0.0],
                             python=[3, [0] * 625, None]))
    progress.update(changes)
    return hf.tiny_checkpoint(lambda d: d.__setitem__("progress", progress))


LOADABLE = {  # Files that must keep loading (the control group of the same process).
    "fixture": lambda c: open(os.path.join(c, "tiny_64x32.pkl"), "rb").read(),
    "fixture_g_ema_only": lambda c: hf.fixture_with(c, lambda d: [d.pop(k) for k in ("G", "D",
                                                                                     "training_set_kwargs")]),
    "tiny": _edit(None),
    "tiny_sound_progress": lambda c: _with_progress(c),
    "tiny_own_augment_kwargs": _edit(lambda d: d.__setitem__("augment_kwargs", dict(
        class_name="training.augment.AugmentPipe", xflip=1, scale=1))),
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, compat_dir):
    folder = tmp_path_factory.mktemp("hostile")
    paths = {}
    for name, make in {**{k: v[0] for k, v in CASES.items()}, **LOADABLE}.items():
        paths[name] = str(folder / f"{name}.pkl")
        with open(paths[name], "wb") as f:
            f.write(make(compat_dir))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "hostile_files.py"), *paths.values()],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    by_path = {entry["path"]: entry for entry in map(json.loads, proc.stdout.splitlines())}
    results = {name: by_path[path] for name, path in paths.items()}
    print("\nfile size, load time and peak memory of each case:")
    for name, entry in results.items():
        print(f"  {name:28s} {os.path.getsize(paths[name]):>10d} B {entry['seconds']:7.3f} s "
              f"{entry['peak_mb']:8.0f} MB  {entry['outcome'][:90]!r}")
    return results


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_checkpoint_is_refused_with_one_line(outcomes, name):
    outcome = outcomes[name]["outcome"]
    assert outcome.startswith("CheckpointError: "), outcome
    message = outcome[len("CheckpointError: "):]
    assert "\n" not in message and "\x1b" not in message
    assert message.startswith(outcomes[name]["path"] + ": "), message
    assert re.search(CASES[name][1], message), message


@pytest.mark.parametrize("name", list(LOADABLE))
def test_sound_files_still_load(outcomes, name):
    assert outcomes[name]["outcome"] == "loaded"


def test_own_snapshot_loads_as_the_trusting_path_does(tmp_path):
    # Independent reference: plain pickle (allow_code=True) rebuilds our classes through their own source.
    from training import networks
    torch.manual_seed(0)
    G = networks.Generator(z_dim=8, c_dim=2, w_dim=8, img_resolution=16, img_channels=3, aspect_ratio=(2, 1),
                           mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8))
    path = tmp_path / "snapshot.pkl"
    legacy.save_network_pkl(path, dict(G_ema=G, training_set_kwargs=dict(class_name=legacy.DATA_CLASS_NAMES[0],
                                                                           path="x.zip", xflip=True)))
    with open(path, "rb") as f:
        safe = legacy.load_network_pkl(f)
    with open(path, "rb") as f:
        trusted = legacy.load_network_pkl(f, allow_code=True)
    a, b = dict(safe["G_ema"].state_dict()), dict(trusted["G_ema"].state_dict())
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert safe["training_set_kwargs"] == trusted["training_set_kwargs"]


def test_get_obj_by_name_never_sees_a_name_from_the_file(tmp_path, compat_dir, monkeypatch):
    seen = []
    original = dnnlib.util.get_obj_by_name
    monkeypatch.setattr(dnnlib.util, "get_obj_by_name", lambda name: seen.append(name) or original(name))
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pkl"
    path.write_bytes(hf.fixture_with(compat_dir, lambda d: d.__setitem__("training_set_kwargs", dict(
        class_name="hostile_files.create_marker", path=str(tmp_path), marker=str(marker)))))
    with pytest.raises(legacy.CheckpointError, match="create_marker"):
        with open(path, "rb") as f:
            legacy.load_network_pkl(f)
    assert seen == [] and not marker.exists()


def test_loader_time_is_linear_in_the_file_not_in_what_it_asks_for(tmp_path):
    # Doubling the hash bomb's depth doubles its size; the refusal stays cheap (printed, not asserted).
    import time
    for depth in (20, 40, 80):
        path = tmp_path / f"bomb{depth}.pkl"
        path.write_bytes(hf.hash_bomb(depth))
        start = time.time()
        with pytest.raises(legacy.CheckpointError, match="dict key is a tuple"):
            with open(path, "rb") as f:
                legacy.load_network_pkl(f)
        print(f"hash bomb of depth {depth}: {path.stat().st_size} bytes, refused in {time.time() - start:.4f} s")


def test_scan_accepts_what_pickle_writes_for_plain_data():
    # A second implementation as the reference: the real unpickler on plain data the scan admits.
    import io
    from training.checkpoint import pickle_scan
    value = {"a": [1, 2.5, None, True], "b": ("x", b"y", {3: frozenset({1, 2})}), "c": {1, 2}}
    for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
        data = pickle.dumps(value, protocol=protocol)
        roles = {("builtins", "set"): pickle_scan.SET, ("builtins", "frozenset"): pickle_scan.SET,
                 ("__builtin__", "set"): pickle_scan.SET, ("__builtin__", "frozenset"): pickle_scan.SET,
                 ("_codecs", "encode"): pickle_scan.CALL, ("builtins", "bytes"): pickle_scan.CALL,
                 ("__builtin__", "bytes"): pickle_scan.CALL}
        pickle_scan.scan(io.BytesIO(data), len(data), lambda m, n: roles.get((m, n)))
        assert pickle.loads(data) == value
