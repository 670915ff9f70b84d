"""Small files that would expand to gigabytes, and files that lie, given to the command-line tools: each is refused
with one line naming it, before the memory is taken.

Latent and direction files (.npz, .npy, .pt), safetensors checkpoints, checkpoint entries of the wrong class,
dataset zips and user photos. The quick tests run the tools in this process and check the message; the slow ones
run them as children and compare their peak memory (RUSAGE_CHILDREN of a wrapper) with the same tool given a
sound file of the same kind: a refusal may cost at most MEMORY_SLACK_MB more.
"""
import json
import os

import numpy as np
import pytest
import torch

import dnnlib
from sg2_cli import edit
from sg2_cli import generate
import hostile_files as hf
import legacy
from training.checkpoint import plain_weights
from sg2_cli import projector
from helpers import run_tool
from test_hostile_cli import assert_one_line_error, run_cli

MEMORY_SLACK_MB = 150   # the attacks below would take 1 GB and more
W_DIM = 8               # hf.tiny_checkpoint's generator: z_dim = w_dim = 8, 16x8 images


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """{name: path} of every file the tests give the tools, sound ones included."""
    root = tmp_path_factory.mktemp("inputs")
    paths = {}

    def put(name, data):
        paths[name] = str(root / name)
        with open(paths[name], "wb") as f:
            f.write(data)
    put("tiny.pkl", hf.tiny_checkpoint())
    G = legacy.load_network(paths["tiny.pkl"])
    num_ws = G.num_ws
    w = np.random.RandomState(0).randn(1, num_ws, W_DIM).astype(np.float32)
    np.savez(root / "good.npz", w=w)
    paths["good.npz"] = str(root / "good.npz")
    torch.save(torch.randn(1, W_DIM), root / "good-direction.pt")
    paths["good-direction.pt"] = str(root / "good-direction.pt")

    gig = hf.deflated_zeros(1024, prefix=hf.npy_header([1 << 28]))  # 1 GiB of float32 zeros, 1 MB compressed
    paths["extra-member.npz"] = hf.write_zip(root / "extra-member.npz", {"w.npy": hf.stored(hf.npy_bytes(w)),
                                                                         "junk.npy": gig})
    noise_name = next(name for name, _ in G.named_buffers() if name.endswith("noise_const"))
    paths["huge-noise.npz"] = hf.write_zip(root / "huge-noise.npz", {"w.npy": hf.stored(hf.npy_bytes(w)),
                                                                     f"noise.{noise_name}.npy": gig})
    paths["huge-w.npz"] = hf.write_zip(root / "huge-w.npz", {"w.npy": gig})
    put("lying-header.npy", hf.npy_header([10 ** 12]))                # 10**12 floats declared in 128 bytes
    put("float64-1e300.npy", hf.npy_bytes(np.full([1, num_ws, W_DIM], 1e300)))
    paths["deflated-record.pt"] = hf.write_zip(root / "deflated-record.pt",
                                               hf.torch_pt_declaring(1 << 28, hf.deflated_zeros(1024)))
    torch.save(torch.zeros(1).expand(10 ** 9), root / "zero-stride.pt")  # one stored float seen 10**9 times
    paths["zero-stride.pt"] = str(root / "zero-stride.pt")
    torch.save(torch.zeros(1, W_DIM).to_sparse(), root / "sparse.pt")
    paths["sparse.pt"] = str(root / "sparse.pt")
    torch.save(torch.randn(1, W_DIM).to(torch.bfloat16), root / "bf16-direction.pt")
    paths["bf16-direction.pt"] = str(root / "bf16-direction.pt")
    put("legacy-format.pt", _legacy_torch_save(torch.randn(1, W_DIM)))

    put("header-of-empty-objects.safetensors", hf.safetensors_bytes(b'{"a":[' + b"{}," * (33 << 20) + b"{}]}"))
    entries = ",".join(f'"t{i}":{{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}' for i in range(60000))
    put("60000-empty-tensors.safetensors", hf.safetensors_bytes(("{" + entries + "}").encode()))
    return paths


def _legacy_torch_save(tensor):
    import io
    buffer = io.BytesIO()
    torch.save(tensor, buffer, _use_new_zipfile_serialization=False)
    return buffer.getvalue()


# What each file given to which tool must produce: (tool module, args, file key, words of the one-line error).
GENERATE = ("generate.py", lambda p: ["--network=" + p["tiny.pkl"], "--outdir={out}", "--device=cpu"])
EDIT = ("edit.py", lambda p: ["apply", "--network=" + p["tiny.pkl"], "--seeds=0", "--outdir={out}", "--device=cpu"])
CASES = {
    "extra-member.npz": (GENERATE, "--projected-w", ["extra-member.npz", "'junk' is neither 'w' nor a noise map"]),
    "huge-noise.npz": (GENERATE, "--projected-w", ["huge-noise.npz", "more than the 256 MB"]),
    "huge-w.npz": (GENERATE, "--projected-w", ["huge-w.npz", "[268435456] float32 array would take"]),
    "lying-header.npy": (GENERATE, "--projected-w", ["lying-header.npy", "declares [1000000000000] float32 values",
                                                     "holds 0 bytes"]),
    "float64-1e300.npy": (GENERATE, "--projected-w", ["float64-1e300.npy", "NaN or infinite", "too large for float32"]),
    "deflated-record.pt": (EDIT, "--direction", ["deflated-record.pt", "its records would take"]),
    "zero-stride.pt": (EDIT, "--direction", ["zero-stride.pt", "of shape [1000000000] would take 4000000000 bytes"]),
    "sparse.pt": (EDIT, "--direction", ["sparse.pt", "is a sparse tensor"]),
    "legacy-format.pt": (EDIT, "--direction", ["legacy-format.pt", "since torch 1.6"]),
    "header-of-empty-objects.safetensors": (GENERATE, "--network", ["header-of-empty-objects.safetensors",
                                                                    "more than the 4 MB"]),
    "60000-empty-tensors.safetensors": (GENERATE, "--network", ["60000-empty-tensors.safetensors",
                                                                "JSON objects and lists, more than"]),
}


def tool_args(case, files, out):
    (script, base), option, _ = CASES[case]
    args = [a.replace("{out}", str(out)) for a in base(files)]
    if option == "--network":
        args = [a for a in args if not a.startswith("--network")] + ["--seeds=0"]
    elif script == "generate.py":
        args = [a for a in args if a != "--seeds=0"]
    return script, args + [f"{option}={files[case]}"] + (["--direction=" + files["good-direction.pt"]]
                                                           if option == "--latents" else [])


@pytest.mark.parametrize("case", list(CASES))
def test_refused_with_one_line(files, tmp_path, capsys, monkeypatch, case):
    script, args = tool_args(case, files, tmp_path / "out")
    module = {"generate.py": generate, "edit.py": edit}[script]
    status, stderr = run_cli(module.main, args, capsys, monkeypatch)
    assert_one_line_error(status, stderr, *CASES[case][2])
    assert not os.path.exists(tmp_path / "out")


def test_bf16_direction_is_converted_exactly(files, tmp_path, capsys, monkeypatch):
    from latent import directions
    expected = torch.load(files["bf16-direction.pt"]).to(torch.float32)[0]
    torch.testing.assert_close(directions.load_direction(files["bf16-direction.pt"], W_DIM), expected, rtol=0, atol=0)
    status, stderr = run_cli(edit.main, ["apply", "--network=" + files["tiny.pkl"], "--seeds=0", "--device=cpu",
                                         "--direction=" + files["bf16-direction.pt"], f"--outdir={tmp_path}"],
                             capsys, monkeypatch)
    assert status == 0 and os.path.isfile(tmp_path / "seed0000.png"), stderr


@pytest.fixture(scope="module")
def control_peaks(files, tmp_path_factory):
    """Peak memory of each tool given sound files: the reference of the memory bounds."""
    out = tmp_path_factory.mktemp("control")
    peaks = {}
    runs = {"generate.py": ["--network=" + files["tiny.pkl"], "--projected-w=" + files["good.npz"],
                            f"--outdir={out / 'g'}", "--device=cpu"],
            "edit.py": ["apply", "--network=" + files["tiny.pkl"], "--direction=" + files["good-direction.pt"],
                        "--seeds=0", f"--outdir={out / 'e'}", "--device=cpu"]}
    for script, args in runs.items():
        result = run_tool(script, args)
        assert result["status"] == 0, result["output"]
        peaks[script] = result["peak_mb"]
    print(f"\ncontrol peaks: {json.dumps(peaks)}")
    return peaks


@pytest.mark.slow
@pytest.mark.parametrize("case", ["extra-member.npz", "huge-noise.npz", "huge-w.npz", "lying-header.npy",
                                  "deflated-record.pt", "zero-stride.pt", "header-of-empty-objects.safetensors",
                                  "60000-empty-tensors.safetensors"])
def test_refused_within_bounded_memory(files, control_peaks, tmp_path, case):
    script, args = tool_args(case, files, tmp_path / "out")
    result = run_tool(script, args)
    print(f"{case}: {os.path.getsize(files[case])} B file, peak {result['peak_mb']:.0f} MB "
          f"(control {control_peaks[script]:.0f} MB), {result['seconds']:.1f} s")
    assert result["status"] == 1 and "Traceback" not in result["output"], result["output"]
    assert result["peak_mb"] < control_peaks[script] + MEMORY_SLACK_MB
    assert result["seconds"] < 60


# ----------------------------------------------------------------------------
# Checkpoint entries must be the class their key names (pickles and safetensors).

def _mapping_of(records):
    return records["G_ema"].meta["state"]["_modules"]["mapping"]


CLASS_CASES = {
    "g_ema-is-a-discriminator.pkl": (lambda d: d.__setitem__("G_ema", d["D"]), "'G_ema' is a Discriminator, not a Generator"),
    "g_ema-is-a-mapping-network.pkl": (lambda d: d.__setitem__("G_ema", _mapping_of(d)),
                                       "'G_ema' is a MappingNetwork, not a Generator"),
    "g_ema-is-a-layer.pkl": (lambda d: d.__setitem__("G_ema", _mapping_of(d).meta["state"]["_modules"]["fc0"]),
                             "'G_ema' is a FullyConnectedLayer, not a Generator"),
    "d-is-a-generator.pkl": (lambda d: d.__setitem__("D", d["G"]), "'D' is a Generator, not a Discriminator"),
}


@pytest.fixture(scope="module")
def class_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("classes")
    paths = {}
    for name, (edit_fn, _) in CLASS_CASES.items():
        paths[name] = str(root / name)
        with open(paths[name], "wb") as f:
            f.write(hf.tiny_checkpoint(edit_fn))
    with open(root / "tiny.pkl", "wb") as f:
        f.write(hf.tiny_checkpoint())
    with open(root / "tiny.pkl", "rb") as f:
        data = legacy.load_network_pkl(f)
    paths["g_ema-is-a-discriminator.safetensors"] = str(root / "g_ema-is-a-discriminator.safetensors")
    plain_weights.export_safetensors(dict(G_ema=data["D"]), paths["g_ema-is-a-discriminator.safetensors"])
    paths["good.safetensors"] = str(root / "good.safetensors")
    plain_weights.export_safetensors(data, paths["good.safetensors"])
    return paths


@pytest.mark.parametrize("name", list(CLASS_CASES) + ["g_ema-is-a-discriminator.safetensors"])
def test_entries_of_the_wrong_class_are_refused_at_load_time(class_files, name):
    expected = CLASS_CASES.get(name, (None, "'G_ema' is a Discriminator, not a Generator"))[1]
    with pytest.raises(legacy.CheckpointError) as info:
        legacy.load_checkpoint(class_files[name])
    assert str(info.value).startswith(class_files[name] + ": ") and expected in str(info.value)


@pytest.mark.parametrize("tool", ["generate", "edit", "style_mixing", "gen_video", "projector"])
def test_every_tool_names_the_file_and_the_entry(class_files, tmp_path, capsys, monkeypatch, tool):
    from sg2_cli import gen_video
    from sg2_cli import style_mixing
    network = "--network=" + class_files["g_ema-is-a-mapping-network.pkl"]
    args = {"generate": (generate.main, [network, "--seeds=0", f"--outdir={tmp_path}"]),
            "edit": (edit.main, ["apply", network, "--direction=x.npy", "--seeds=0", f"--outdir={tmp_path}"]),
            "style_mixing": (style_mixing.main, [network, "--rows=0", "--cols=1", f"--outdir={tmp_path}"]),
            "gen_video": (gen_video.main, [network, "--seeds=0", f"--out={tmp_path / 'v.mp4'}"]),
            "projector": (projector.main, [network, "--target=x.png", f"--outdir={tmp_path}"])}[tool]
    status, stderr = run_cli(args[0], args[1] + ["--device=cpu"], capsys, monkeypatch)
    assert_one_line_error(status, stderr, "g_ema-is-a-mapping-network.pkl", "'G_ema' is a MappingNetwork, not a Generator")


# ----------------------------------------------------------------------------
# safetensors: float32 only, finite only.

def _retyped(source, path, change):
    """A copy of the safetensors file `source` with change(tensors) applied, the same config."""
    import safetensors
    import safetensors.torch
    with safetensors.safe_open(source, "pt") as f:
        metadata = f.metadata()
    tensors = safetensors.torch.load_file(source)
    change(tensors)
    safetensors.torch.save_file(tensors, path, metadata=metadata)
    return str(path)


@pytest.mark.parametrize("dtype,shown", [(torch.bfloat16, "BF16"), (torch.float16, "F16"), (torch.int8, "I8"),
                                         (torch.bool, "BOOL"), (torch.float8_e4m3fn, "F8_E4M3"),
                                         (torch.float64, "F64")])
def test_safetensors_of_other_dtypes_say_what_they_hold(class_files, tmp_path, dtype, shown):
    def change(tensors):
        name = sorted(tensors)[0]
        tensors[name] = tensors[name].to(dtype)
    path = _retyped(class_files["good.safetensors"], tmp_path / "retyped.safetensors", change)
    with pytest.raises(legacy.CheckpointError, match=rf"is {shown}; plain weights hold float32 \(F32\) tensors only"):
        legacy.load_checkpoint(path)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_safetensors_with_non_finite_weights_are_refused(class_files, tmp_path, value):
    def change(tensors):
        for name in tensors:
            tensors[name] = torch.full_like(tensors[name], value)
    path = _retyped(class_files["good.safetensors"], tmp_path / "nan.safetensors", change)
    with pytest.raises(legacy.CheckpointError, match="holds NaN or infinite values"):
        legacy.load_checkpoint(path)
    assert legacy.load_checkpoint(class_files["good.safetensors"])["G_ema"] is not None  # the control loads


# ----------------------------------------------------------------------------
# Photos from the user (projector.py --target; the app's Project tab reads them the same way).

@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    import PIL.Image
    root = tmp_path_factory.mktemp("photos")
    paths = {}
    for name, data in {"13000x13000.png": hf.png_declaring(13000, 13000),
                       "100000x100000.png": hf.png_declaring(100000, 100000),
                       "appended.png": hf.png_bytes(np.zeros([16, 8, 3], np.uint8)) + bytes(8 << 20),
                       "named.png": hf.image_as("JPEG"),
                       "notes.png": b"not an image"}.items():
        paths[name] = str(root / name)
        with open(paths[name], "wb") as f:
            f.write(data)
    paths["photo.webp"] = str(root / "photo.webp")
    PIL.Image.fromarray(np.zeros([16, 8, 3], np.uint8)).save(paths["photo.webp"])
    paths["good.png"] = str(root / "good.png")
    PIL.Image.fromarray(np.full([40, 20, 3], 200, np.uint8)).save(paths["good.png"])
    if hasattr(os, "mkfifo"):
        paths["fifo.png"] = str(root / "fifo.png")
        os.mkfifo(paths["fifo.png"])
    return paths


@pytest.mark.parametrize("name,needle", [
    ("13000x13000.png", "too large to decode safely"), ("100000x100000.png", "too large to decode safely"),
    ("appended.png", "more than such an image takes"), ("named.png", "is a JPEG image, not PNG"),
    ("photo.webp", "is a WEBP image, not JPEG or PNG"), ("notes.png", "not a readable image"),
    ("fifo.png", "not a regular file"),
])
def test_projector_targets_have_the_datasets_limits(files, photos, tmp_path, capsys, monkeypatch, name, needle):
    if name not in photos:
        pytest.skip("needs FIFOs")
    status, stderr = run_cli(projector.main, ["--network=" + files["tiny.pkl"], f"--target={photos[name]}",
                                              f"--outdir={tmp_path / 'out'}", "--device=cpu", "--vgg16=/nonexistent.pt"],
                             capsys, monkeypatch)
    assert_one_line_error(status, stderr, name, needle)
    assert not os.path.exists(tmp_path / "out")


def test_app_uploads_have_the_same_limits(photos, tmp_path):
    from webapp.session import Session
    from helpers_latent import tiny_generator
    from dnnlib.util import UserError
    session = Session(tiny_generator(res=32), outdir=str(tmp_path), verbose=False)
    for name in ("13000x13000.png", "appended.png", "photo.webp"):
        with pytest.raises(UserError, match=name):
            session.target(photos[name])
    assert session.target(photos["good.png"]).shape == (session.G.img_height, session.G.img_width, 3)


@pytest.mark.slow
def test_projector_refuses_a_bomb_within_bounded_memory(files, photos, tmp_path):
    base = ["--network=" + files["tiny.pkl"], "--device=cpu", "--vgg16=/nonexistent.pt", f"--outdir={tmp_path}"]
    control = run_tool("projector.py", base + [f"--target={photos['good.png']}"])  # fails later, at the detector
    bomb = run_tool("projector.py", base + [f"--target={photos['13000x13000.png']}"])
    print(f"control {control['peak_mb']:.0f} MB, 13000x13000 header {bomb['peak_mb']:.0f} MB")
    assert "--vgg16" in control["output"] and "too large to decode safely" in bomb["output"]
    assert bomb["status"] == 1 and "Traceback" not in bomb["output"]
    assert bomb["peak_mb"] < control["peak_mb"] + MEMORY_SLACK_MB  # decoding it would take 676 MB and more


# ----------------------------------------------------------------------------
# Dataset zips: a member is judged by its header and size, never read whole when it cannot be an image.

def _png_then_zeros(mib):
    return hf.deflated_zeros(mib, prefix=hf.png_bytes(np.zeros([16, 8, 3], np.uint8)))


@pytest.fixture(scope="module")
def zips(tmp_path_factory):
    root = tmp_path_factory.mktemp("zips")
    good = hf.stored(hf.png_bytes(np.full([16, 8, 3], 100, np.uint8)))
    padded = _png_then_zeros(960)
    return {"good.zip": hf.write_zip(root / "good.zip", {f"{i:05d}.png": good for i in range(6)}),
            "one-960MB-member.zip": hf.write_zip(root / "one-960MB-member.zip",
                                                 {"00000.png": good, "00001.png": hf.deflated_zeros(960)}),
            "six-padded-pngs.zip": hf.write_zip(root / "six-padded-pngs.zip",
                                                {f"{i:05d}.png": padded for i in range(6)})}


ZIP_NEEDLES = {"one-960MB-member.zip": ["one-960MB-member.zip/00001.png", "not a readable image"],
               "six-padded-pngs.zip": ["six-padded-pngs.zip/00000.png", "1006633", "more than such an image takes"]}


@pytest.mark.parametrize("name", list(ZIP_NEEDLES))
@pytest.mark.parametrize("tool", ["dataset_tool", "train"])
def test_dataset_zips_with_huge_members_are_refused(zips, tmp_path, capsys, monkeypatch, name, tool):
    from sg2_cli import dataset_tool
    from sg2_cli import train
    args = {"dataset_tool": (dataset_tool.main, [f"--source={zips[name]}", f"--out={tmp_path / 'out.zip'}"]),
            "train": (train.main, [f"--data={zips[name]}", f"--outdir={tmp_path / 'runs'}", "--metrics=none",
                                   "--device=cpu", "--workers=0"])}[tool]
    status, stderr = run_cli(*args, capsys, monkeypatch)
    assert_one_line_error(status, stderr, *ZIP_NEEDLES[name])
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ZIP_NEEDLES))
def test_dataset_zips_are_refused_within_bounded_memory(zips, tmp_path, name):
    control = run_tool("dataset_tool.py", [f"--source={zips['good.zip']}", f"--out={tmp_path / 'good-out.zip'}"])
    result = run_tool("dataset_tool.py", [f"--source={zips[name]}", f"--out={tmp_path / 'out.zip'}"])
    print(f"{name}: control {control['peak_mb']:.0f} MB {control['seconds']:.1f} s, "
          f"refused {result['peak_mb']:.0f} MB {result['seconds']:.1f} s")
    assert control["status"] == 0 and result["status"] == 1 and "Traceback" not in result["output"]
    assert result["peak_mb"] < control["peak_mb"] + MEMORY_SLACK_MB
    assert result["seconds"] < control["seconds"] + 10  # the old reader took 12-68 s to read the zeros


def test_a_dataset_json_that_expands_is_refused_before_it_is_read(tmp_path, capsys, monkeypatch):
    from sg2_cli import dataset_tool
    image = hf.stored(hf.png_bytes(np.full([16, 8, 3], 100, np.uint8)))
    labels = hf.deflated_zeros(512, prefix=b'{"labels": [["00000.png", 0]]}')  # then 512 MiB of NUL bytes
    archive = hf.write_zip(tmp_path / "labels.zip", {"00000.png": image, "dataset.json": labels})
    status, stderr = run_cli(dataset_tool.main, [f"--source={archive}", f"--out={tmp_path / 'out.zip'}"], capsys,
                             monkeypatch)
    assert_one_line_error(status, stderr, "labels.zip/dataset.json", "more than the 16781312 labels")


def test_many_views_of_one_storage_count_against_the_budget(tmp_path):
    from dnnlib import array_files
    from latent import space
    storage = torch.zeros(8 << 20)  # 32 MB, stored once
    torch.save({f"noise.n{i}": storage for i in range(64)} | {"w": storage[:W_DIM]}, tmp_path / "views.pt")
    assert os.path.getsize(tmp_path / "views.pt") < 40 << 20
    with pytest.raises(dnnlib.util.UserError, match="would take .* more than the 256 MB"):
        space.read_arrays(str(tmp_path / "views.pt"))
    assert array_files.MAX_DECODED_BYTES == 256 << 20
