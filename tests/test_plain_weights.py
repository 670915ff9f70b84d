"""Plain weights (safetensors + JSON config): the export of the compat fixture reproduces it, without pickle."""
import io
import json
import os
import pickle

import numpy as np
import pytest
import torch

from sg2_cli import convert
import dnnlib
import legacy
from training.checkpoint import plain_weights, rebuild, unpickler

safetensors_torch = pytest.importorskip("safetensors.torch")


@pytest.fixture(scope="module")
def exported(compat_dir, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("plain") / "tiny_64x32.safetensors")
    assert convert.convert_checkpoint(os.path.join(compat_dir, "tiny_64x32.pkl"), path) == ["G", "D", "G_ema"]
    return path


@pytest.fixture(scope="module")
def from_pickle(compat_dir):
    with open(os.path.join(compat_dir, "tiny_64x32.pkl"), "rb") as f:
        return legacy.load_network_pkl(f)


def _refuse(*args, **kwargs):
    raise AssertionError("pickle was used")


@pytest.mark.slow
def test_loading_never_unpickles_and_gives_the_expected_outputs(exported, compat_dir, monkeypatch):
    for module, name in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (pickle, "_Unpickler"),
                         (torch, "load"), (unpickler, "RestrictedUnpickler")]:
        monkeypatch.setattr(module, name, _refuse)
    G = legacy.load_network(exported)
    expected = np.load(os.path.join(compat_dir, "tiny_64x32_expected.npz"))
    z = torch.from_numpy(expected["z"])
    c = torch.zeros([len(z), 0])
    ws = G.mapping(z, c, truncation_psi=0.7)
    np.testing.assert_allclose(ws.numpy(), expected["ws_psi0.7"], atol=1e-4, rtol=0)
    img = G.synthesis(torch.from_numpy(expected["ws_psi1.0"]), noise_mode="const", force_fp32=True)
    np.testing.assert_allclose(img.numpy(), expected["img_const_psi1.0"], atol=1e-3, rtol=0)
    D = legacy.load_network(exported, key="D")
    logits = D(torch.from_numpy(expected["D_input_rand"]), c, force_fp32=True)
    np.testing.assert_allclose(logits.detach().numpy(), expected["D_logits_rand"], atol=1e-3, rtol=0)


@pytest.mark.slow
def test_same_dict_shape_tensors_and_arguments_as_the_pickle(exported, from_pickle):
    with open(exported, "rb") as f:
        data = legacy.load_network_pkl(f)
    assert set(data) == set(legacy.CHECKPOINT_KEYS) and data["augment_pipe"] is None
    assert data["training_set_kwargs"] == from_pickle["training_set_kwargs"]
    assert isinstance(data["training_set_kwargs"], dnnlib.EasyDict)
    for key in ("G", "D", "G_ema"):
        ours, theirs = rebuild.network_tensors(data[key]), rebuild.network_tensors(from_pickle[key])
        assert sorted(ours) == sorted(theirs)
        for name in ours:
            assert torch.equal(ours[name], theirs[name]), f"{key}.{name}"
        assert json.dumps(data[key].init_kwargs, sort_keys=True) == json.dumps(from_pickle[key].init_kwargs,
                                                                               sort_keys=True)
        assert data[key].training == from_pickle[key].training


def test_config_is_plain_json_in_the_metadata(exported, from_pickle):
    from safetensors import safe_open
    with safe_open(exported, framework="pt") as f:  # the library's own reader, independent of ours
        config = json.loads(f.metadata()[plain_weights.METADATA_KEY])
        names = set(f.keys())
    assert config["format"] == "stylegan2-plain-weights" and config["format_version"] == 1
    assert config["package_version"] == dnnlib.util.package_version()
    assert config["networks"]["G_ema"]["class_name"] == "Generator"
    assert config["networks"]["D"]["class_name"] == "Discriminator"
    assert config["networks"]["G_ema"]["init_kwargs"]["img_resolution"] == 64
    assert config["networks"]["G_ema"]["init_kwargs"]["square"] is False
    assert "G_ema.mapping.fc0.weight" in names and "D.b4.out.weight" in names
    assert len(names) == sum(len(rebuild.network_tensors(from_pickle[k])) for k in ("G", "D", "G_ema"))


def _rewrite(exported, tmp_path, edit_config=None, edit_tensors=None, metadata=None):
    from safetensors import safe_open
    with safe_open(exported, framework="pt") as f:
        config = json.loads(f.metadata()[plain_weights.METADATA_KEY])
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    if edit_config:
        edit_config(config)
    if edit_tensors:
        edit_tensors(tensors)
    path = tmp_path / "edited.safetensors"
    meta = {plain_weights.METADATA_KEY: json.dumps(config)} if metadata is None else metadata
    path.write_bytes(safetensors_torch.save(tensors, metadata=meta))
    return str(path)


def _set(config, key, field, value):
    config["networks"][key][field] = value


@pytest.mark.parametrize("edit_config,edit_tensors,message", [
    (lambda c: _set(c, "G_ema", "class_name", "os.system"), None, "class 'os.system', which this package does not"),
    (lambda c: c["networks"]["G_ema"]["init_kwargs"].update(bogus=1), None, r"\(Generator\) has .*constructor argument.*'bogus'"),
    (lambda c: _set(c, "D", "init_kwargs", "img_resolution=64"), None, "needs class_name"),
    (lambda c: c.update(format_version=99), None, "format_version 99 is not supported"),
    (lambda c: c["networks"].update(loss={"class_name": "Generator"}), None, "'networks' must name"),
    (None, lambda t: t.pop("G_ema.mapping.fc0.weight"), "lacks tensor.*mapping.fc0.weight"),
    (None, lambda t: t.update({"extra.weight": torch.zeros(1)}), "tensor 'extra.weight' belongs to no network"),
    (None, lambda t: t.update({"D.b4.out.weight": torch.zeros(3, 3)}), r"'D' tensor 'b4.out.weight' has shape \[3, 3\]"),
])
def test_damaged_or_hostile_files_are_refused_with_the_file_named(exported, tmp_path, edit_config, edit_tensors,
                                                                   message):
    path = _rewrite(exported, tmp_path, edit_config, edit_tensors)
    with pytest.raises(legacy.CheckpointError, match=message) as info:
        legacy.load_network(path)
    assert str(info.value).startswith(path)


def test_foreign_safetensors_and_truncated_files(exported, tmp_path):
    foreign = _rewrite(exported, tmp_path, metadata={"format": "pt"})
    with pytest.raises(legacy.CheckpointError, match="without this package's 'stylegan2' config"):
        legacy.load_network(foreign)
    data = open(exported, "rb").read()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(legacy.CheckpointError, match="not a readable safetensors file"):
        legacy.load_network(str(truncated))
    with pytest.raises(legacy.CheckpointError, match="not a readable safetensors file"):
        legacy.load_network_pkl(io.BytesIO(data[:len(data) // 2]))  # a stream without a file name


def test_stream_without_a_file_name_loads(exported):
    with open(exported, "rb") as f:
        data = legacy.load_network_pkl(io.BytesIO(f.read()))
    assert data["G_ema"].img_resolution == 64


def test_convert_cli_writes_and_refuses_clearly(compat_dir, tmp_path, capsys):
    out = tmp_path / "net.safetensors"
    convert.main.main([f"--network={os.path.join(compat_dir, 'tiny_64x32.pkl')}", f"--out={out}"],
                      standalone_mode=False)
    assert "Wrote G, D, G_ema to" in capsys.readouterr().out and out.is_file()
    with pytest.raises(dnnlib.util.UserError, match="--out: .* should end in .pkl, .safetensors, .onnx, or .pt"):
        convert.main.main([f"--network={out}", f"--out={tmp_path / 'net.txt'}"], standalone_mode=False)
    with pytest.raises(dnnlib.util.UserError, match="--out: .* is the input file"):
        convert.main.main([f"--network={out}", f"--out={out}"], standalone_mode=False)


def test_generate_gives_the_same_images_from_both_formats(compat_dir, exported, tmp_path, one_torch_thread):
    from sg2_cli import generate
    import PIL.Image
    for name, network in [("pkl", os.path.join(compat_dir, "tiny_64x32.pkl")), ("st", exported)]:
        generate.main.main([f"--network={network}", "--seeds=0-1", "--device=cpu", f"--outdir={tmp_path / name}"],
                           standalone_mode=False)
    for seed in (0, 1):
        a = np.asarray(PIL.Image.open(tmp_path / "pkl" / f"seed{seed:04d}.png"))
        b = np.asarray(PIL.Image.open(tmp_path / "st" / f"seed{seed:04d}.png"))
        assert a.shape == (64, 32, 3) and np.array_equal(a, b)
