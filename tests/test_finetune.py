"""Fine-tuning from checkpoints: partial files, networks built from the file, Freeze-D, the original commands."""
import json
import os
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import dnnlib
import legacy
from helpers_training import (ROOT, assert_networks_bitwise_equal, load, make_figures, snapshots, state_tensors,
                              tiny_options, train_in_process)
from training import freeze_d, networks

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# The file's architecture, which the runs below must take from the file (no --cbase/--cmax/--map given).
ARCH = dict(cbase=512, cmax=32, map=2, aspect=(2, 1))


def architecture_free_options(data, **overrides):
    """tiny_options without the architecture options: a fine-tuning run must read those from the file."""
    opts = tiny_options(data)
    for key in ("cbase", "cmax", "map"):
        opts.pop(key)
    return dict(opts, **overrides)


def perturb(module, seed):
    """Move every parameter (and w_avg) away from its initial value, so that each one matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            if name.endswith("weight") or name.endswith("bias") or name.endswith("w_avg") or "const" in name \
                    or name.endswith("noise_strength"):
                tensor.add_(torch.randn(tensor.shape, generator=gen) * 0.5)
    return module


def make_G(resolution=32, cbase=512, cmax=32, map=2, aspect=(2, 1), z_dim=64, seed=1):
    torch.manual_seed(seed)
    G = networks.Generator(z_dim=z_dim, c_dim=0, w_dim=64, img_resolution=resolution, img_channels=3,
                           mapping_kwargs=dict(num_layers=map),
                           synthesis_kwargs=dict(channel_base=cbase, channel_max=cmax, num_fp16_res=0),
                           aspect_ratio=list(aspect))
    return perturb(G, seed)


def make_D(resolution=32, cbase=512, cmax=32, aspect=(2, 1), seed=2, **kwargs):
    torch.manual_seed(seed)
    D = networks.Discriminator(c_dim=0, img_resolution=resolution, img_channels=3, channel_base=cbase,
                               channel_max=cmax, aspect_ratio=list(aspect),
                               epilogue_kwargs=dict(mbstd_group_size=4), **kwargs)
    return perturb(D, seed)


def save_checkpoint(path, **nets):
    legacy.save_network_pkl(str(path), dict(nets))
    return str(path)


def flat(module):
    return torch.cat([t.detach().flatten() for _, t in sorted(list(module.named_parameters())
                                                               + list(module.named_buffers()))])


def relative_distance(a, b):
    """||a - b|| / ||b|| over all parameters and buffers (a fresh network is about sqrt(2) from a trained one)."""
    fa, fb = flat(a), flat(b)
    return float((fa - fb).norm() / fb.norm())


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    return make_figures(tmp_path_factory.mktemp("data") / "figures.zip")


# ----------------------------------------------------------------------------
# Acceptance 1: partial checkpoints start what they can.


@pytest.mark.slow
@pytest.mark.parametrize("keys", [("G_ema",), ("G", "D")], ids=["G_ema-only", "G-and-D"])
def test_partial_checkpoint_starts_from_its_weights(tmp_path, figures, keys):
    G_file, D_file = make_G(), make_D()
    nets = {"G_ema": G_file} if keys == ("G_ema",) else {"G": G_file, "D": D_file}
    pkl = save_checkpoint(tmp_path / "partial.pkl", **nets)
    status, run_dir = train_in_process(tmp_path / "runs", kimg=0.008, resume=pkl,
                                       **architecture_free_options(figures))
    assert status == 0
    first = load(snapshots(run_dir)[0])  # Ticks at 4 and 8 images write one snapshot, network-snapshot-000000.
    assert first["progress"]["cur_nimg"] == 8

    # A fresh generator of the same architecture is unrelated to the file: the yardstick of "close".
    assert relative_distance(make_G(seed=7), G_file) > 1.0
    for key in ("G", "G_ema"):
        assert relative_distance(first[key], G_file) < 0.05, key
    assert not torch.equal(flat(first["G"]), flat(G_file))  # G did train.
    log = open(os.path.join(run_dir, "log.txt")).read()
    if keys == ("G_ema",):
        assert "G <- G_ema (no G in file), G_ema <- G_ema, D: fresh (no D in file)" in log
        assert relative_distance(first["D"], D_file) > 1.0
    else:
        assert "G <- G, G_ema <- G (no G_ema in file), D <- D" in log
        assert relative_distance(first["D"], D_file) < 0.05


def test_checkpoint_without_networks_is_an_error(tmp_path, figures):
    from training import presets
    pkl = save_checkpoint(tmp_path / "empty.pkl", training_set_kwargs=dict(path="x"))
    with pytest.raises(dnnlib.util.UserError, match=r"empty\.pkl holds none of G, G_ema, D"):
        presets.make_training_options(resume=pkl, **architecture_free_options(figures))


def test_networks_that_do_not_fit_name_the_first_tensor(tmp_path, figures):
    # G with 32 channels at 4x2, G_ema with 16: the run builds G from the file's G, so G_ema cannot fit.
    pkl = save_checkpoint(tmp_path / "mixed.pkl", G=make_G(cmax=32), G_ema=make_G(cmax=16))
    with pytest.raises(dnnlib.util.UserError, match=r"mixed\.pkl 'G_ema' does not fit .*synthesis\.b4\.const is "
                                                    r"\[16, 4, 2\] in the file, the run needs \[32, 4, 2\]"):
        train_in_process(tmp_path / "runs", kimg=0.004, resume=pkl, **architecture_free_options(figures))


# ----------------------------------------------------------------------------
# Acceptance 2: Freeze-D.


def test_freeze_layer_count_follows_the_original(tmp_path):
    # stylegan2-ada-pytorch counts per DiscriminatorBlock, highest resolution first: fromrgb (first block),
    # conv0, conv1, skip (resnet).
    assert freeze_d.layer_names(32, "resnet") == [
        "b32.fromrgb", "b32.conv0", "b32.conv1", "b32.skip", "b16.conv0", "b16.conv1", "b16.skip",
        "b8.conv0", "b8.conv1", "b8.skip"]
    assert freeze_d.layer_names(16, "orig") == ["b16.fromrgb", "b16.conv0", "b16.conv1", "b8.conv0", "b8.conv1"]
    assert freeze_d.layer_names(16, "skip") == ["b16.fromrgb", "b16.conv0", "b16.conv1", "b8.fromrgb", "b8.conv0",
                                                "b8.conv1"]
    # The network agrees: with freeze_layers=k exactly the first k layers hold their weights as buffers.
    for architecture in ("resnet", "orig", "skip"):
        names = freeze_d.layer_names(32, architecture)
        for k in range(len(names) + 1):
            D = networks.Discriminator(c_dim=0, img_resolution=32, img_channels=3, channel_base=256, channel_max=16,
                                       architecture=architecture, block_kwargs=dict(freeze_layers=k))
            buffers = {name.rsplit(".", 1)[0] for name, _ in D.named_buffers() if name.endswith(".weight")}
            assert buffers == set(names[:k]), (architecture, k)
    # A D saved with freeze_layers (as the original code writes it) loads back with the same layers frozen.
    pkl = save_checkpoint(tmp_path / "frozen.pkl", D=make_D(block_kwargs=dict(freeze_layers=5)))
    D = load(pkl)["D"]
    assert {n.rsplit(".", 1)[0] for n, _ in D.named_buffers() if n.endswith(".weight")} == set(
        freeze_d.layer_names(32)[:5])


@pytest.mark.slow
def test_freezed_layers_stay_bitwise_unchanged(tmp_path, figures):
    D_file = make_D()
    pkl = save_checkpoint(tmp_path / "full.pkl", G=make_G(), D=D_file, G_ema=make_G())
    status, run_dir = train_in_process(tmp_path / "runs", kimg=0.032, resume=pkl, freezed=5,
                                       **architecture_free_options(figures))
    assert status == 0
    last = load(snapshots(run_dir)[-1])
    assert last["progress"]["cur_nimg"] == 32
    assert last["D"].init_kwargs["block_kwargs"]["freeze_layers"] == 5
    before, after = state_tensors({"D": D_file}, keys=("D",)), state_tensors(last, keys=("D",))
    frozen = {f"D.{layer}.{kind}" for layer in freeze_d.layer_names(32)[:5] for kind in ("weight", "bias")}
    trained = [name for name in before if name.endswith(("weight", "bias")) and name not in frozen]
    assert frozen & set(before) == frozen - {"D.b32.skip.bias"}  # skip has no bias
    for name in frozen & set(before):
        assert torch.equal(before[name], after[name]), name
    assert len(trained) > 10
    for name in trained:  # b16.conv1 onward, and the epilogue
        assert not torch.equal(before[name], after[name]), name


@pytest.mark.slow
def test_exact_resume_of_a_freezed_fine_tuning_run(tmp_path, figures):
    pkl = save_checkpoint(tmp_path / "full.pkl", G=make_G(), D=make_D(), G_ema=make_G())
    opts = architecture_free_options(figures, freezed=4, aug="ada", augpipe="body")
    _, full = train_in_process(tmp_path / "a", kimg=0.048, resume=pkl, **opts)
    _, first = train_in_process(tmp_path / "b", kimg=0.024, resume=pkl, **opts)
    _, resumed = train_in_process(tmp_path / "b", kimg=0.048, resume=snapshots(first)[-1], **opts)
    options = json.load(open(os.path.join(resumed, "training_options.json")))
    assert options["fine_tune"] is True and options["ema_rampup"] is None and options["ada_kimg"] == 100
    # The second part did resume (a run that ignored --resume would start from the file again, as `full` did,
    # and end equal to it too)...
    half = load(snapshots(first)[-1])
    progress = half["progress"]
    assert progress["cur_nimg"] == 24
    log = open(os.path.join(resumed, "log.txt")).read()
    assert f"Resumed at kimg 0.024 (tick {progress['cur_tick']}, step {progress['batch_idx']})" in log
    # ...and after more steps it equals the uninterrupted run, whose weights moved on from the halfway point.
    a, b = load(snapshots(full)[-1]), load(snapshots(resumed)[-1])
    assert a["progress"]["cur_nimg"] == b["progress"]["cur_nimg"] == 48
    assert_networks_bitwise_equal(a, b)
    th, tb = state_tensors(half), state_tensors(b)
    assert any(not torch.equal(th[name], tb[name]) for name in th)


# ----------------------------------------------------------------------------
# Acceptance 4: the networks come from the file; contradictions are one-line errors.


@pytest.fixture(scope="module")
def square_figures(tmp_path_factory):
    return make_figures(tmp_path_factory.mktemp("square") / "square.zip", num=16, height=32, width=32)


@pytest.fixture(scope="module")
def other_arch_pkl(tmp_path_factory):
    """A G_ema-only file whose architecture is none of the preset's: 32x32, cbase 256, cmax 16, 3 mapping layers."""
    path = tmp_path_factory.mktemp("other") / "other.pkl"
    return save_checkpoint(path, G_ema=make_G(resolution=32, cbase=256, cmax=16, map=3, aspect=(1, 1), z_dim=48))


@pytest.mark.slow
def test_run_builds_the_files_architecture(tmp_path, square_figures, other_arch_pkl):
    status, run_dir = train_in_process(tmp_path, kimg=0.004, resume=other_arch_pkl,
                                       **architecture_free_options(square_figures))
    assert status == 0
    G_file = load(other_arch_pkl)["G_ema"]
    data = load(snapshots(run_dir)[-1])
    for key in ("G", "G_ema"):
        assert data[key].init_kwargs == {**G_file.init_kwargs, "c_dim": 0}
        assert relative_distance(data[key], G_file) < 0.05
    D = data["D"].init_kwargs
    assert (D["channel_base"], D["channel_max"], D["aspect_ratio"]) == (256, 16, [1, 1])
    assert data["G"].mapping.num_layers == 3 and data["G"].z_dim == 48
    assert (data["G"].img_height, data["G"].img_width) == (32, 32)


@pytest.mark.parametrize("option, typed, expected", [
    ("cbase", 512, r"--cbase=512 contradicts .*other\.pkl: its G has channel base 256"),
    ("cmax", 32, r"--cmax=32 contradicts .*other\.pkl: its G has max channels 16"),
    ("map", 2, r"--map=2 contradicts .*other\.pkl: its G has mapping layers 3"),
])
def test_contradicting_option_names_both_values(tmp_path, square_figures, other_arch_pkl, option, typed, expected):
    from training import presets
    with pytest.raises(dnnlib.util.UserError, match=expected):
        presets.make_training_options(resume=other_arch_pkl, **architecture_free_options(square_figures,
                                                                                          **{option: typed}))


def test_aspect_against_file_and_dataset(figures, other_arch_pkl):
    from training import presets
    # The dataset is 2:1 like --aspect, the file 1:1.
    with pytest.raises(dnnlib.util.UserError, match=r"--aspect=2:1 contradicts .*other\.pkl: its G has aspect "
                                                    r"H:W 1:1"):
        presets.make_training_options(resume=other_arch_pkl, aspect="2:1", **architecture_free_options(figures))
    with pytest.raises(dnnlib.util.UserError, match=r"has 32x16 images \(HxW\), but .*other\.pkl expects 32x32"):
        presets.make_training_options(resume=other_arch_pkl, **architecture_free_options(figures))


@pytest.mark.slow
def test_cli_error_is_one_line_and_leaves_nothing(tmp_path, figures, other_arch_pkl):
    outdir = tmp_path / "runs"
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), f"--outdir={outdir}", f"--data={figures}",
           f"--resume={other_arch_pkl}", "--cbase=512", "--metrics=none", "--device=cpu", "--workers=0"]
    for args in (cmd, [a for a in cmd if a != "--cbase=512"]):
        result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.stderr, result.stderr
        assert ("512" in lines[0] and "256" in lines[0]) or ("32x16" in lines[0] and "32x32" in lines[0])
    assert not outdir.exists()


def test_options_of_an_original_checkpoint(compat_dir, tmp_path):
    # The fixture was written by the original StyleGAN-Human code (square=False, G, D and G_ema, no progress).
    from training import presets
    data = make_figures(tmp_path / "figures64.zip", num=8, height=64, width=32)
    reference = json.load(open(os.path.join(compat_dir, "tiny_64x32.json")))
    c, desc = presets.make_training_options(resume=os.path.join(compat_dir, "tiny_64x32.pkl"), freezed=4,
                                            **architecture_free_options(data))
    drop = ("c_dim", "img_resolution", "img_channels")
    G_expected = {k: v for k, v in reference["G_kwargs"].items() if k not in drop}
    D_expected = {k: v for k, v in reference["D_kwargs"].items() if k not in drop}
    D_expected["block_kwargs"] = {"freeze_layers": 4}
    assert {k: v for k, v in c.G_kwargs.items() if k != "class_name"} == G_expected
    assert {k: v for k, v in c.D_kwargs.items() if k != "class_name"} == D_expected
    assert c.fine_tune and c.ema_rampup is None and desc.endswith("-resume-freezed4")


# ----------------------------------------------------------------------------
# Acceptance 3: the original commands.


def dry_run(*args):
    """train.py's options for a command line, through the click command (no training)."""
    from sg2_cli import train
    result = CliRunner().invoke(train.main, ["--outdir=unused", "--dry-run", "--workers=0", "--device=cpu", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    text = result.output.split("Training options:\n", 1)[1].split("\n\nDry run", 1)[0]
    return json.loads(text)


def test_train_aliases(tmp_path, figures, square_figures):
    # StyleGAN-Human: --square=False is 2:1 and is checked against the dataset.
    assert dry_run(f"--data={figures}", "--square=False")["G_kwargs"]["aspect_ratio"] == [2, 1]
    assert dry_run(f"--data={square_figures}", "--square=True")["G_kwargs"]["aspect_ratio"] == [1, 1]
    with pytest.raises(dnnlib.util.UserError, match=r"--square=False does not match the dataset's images \(32x32"):
        dry_run(f"--data={square_figures}", "--square=False")
    # stylegan2-ada-pytorch: --freezed, --resume (a file, or 'noresume'), --snap, --metrics.
    pkl = save_checkpoint(tmp_path / "full.pkl", G=make_G(), D=make_D(), G_ema=make_G())
    c = dry_run(f"--data={figures}", f"--resume={pkl}", "--freezed=10", "--snap=10", "--metrics=kid50k_full")
    assert c["D_kwargs"]["block_kwargs"]["freeze_layers"] == 10 and c["resume_pkl"] == pkl
    assert c["image_snapshot_ticks"] == c["network_snapshot_ticks"] == 10 and c["metrics"] == ["kid50k_full"]
    c = dry_run(f"--data={figures}", "--resume=noresume", "--metrics=none")
    assert c["resume_pkl"] is None and c["metrics"] == [] and c["D_kwargs"]["block_kwargs"] == {}
    with pytest.raises(dnnlib.util.UserError, match=r"--freezed: 11 is more than the 10 layers"):
        dry_run(f"--data={figures}", "--freezed=11")


def test_original_options_this_package_lacks(figures):
    with pytest.raises(dnnlib.util.UserError, match=r"--resume=ffhq256 is one of stylegan2-ada-pytorch's named "
                                                    r"downloads, which this package does not have"):
        dry_run(f"--data={figures}", "--resume=ffhq256")
    with pytest.raises(dnnlib.util.UserError, match=r"--cfg: 'cifar' is stylegan2-ada-pytorch's CIFAR-10 preset .* "
                                                    r"which this package does not have"):
        dry_run(f"--data={figures}", "--cfg=cifar")


def test_generate_version_alias(tmp_path):
    from sg2_cli import generate
    pkl = save_checkpoint(tmp_path / "g.pkl", G_ema=make_G())
    runner = CliRunner()
    plain = runner.invoke(generate.main, [f"--network={pkl}", "--seeds=0-1", f"--outdir={tmp_path}/a", "--device=cpu"])
    v2 = runner.invoke(generate.main, [f"--network={pkl}", "--seeds=0-1", f"--outdir={tmp_path}/b", "--device=cpu",
                                       "--version", "2"])
    assert plain.exit_code == v2.exit_code == 0, v2.output
    for name in ("seed0000.png", "seed0001.png"):
        assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / "a" / name)),
                              np.asarray(PIL.Image.open(tmp_path / "b" / name)))
    for version, family in [("1", "StyleGAN1"), ("3", "StyleGAN3")]:
        result = runner.invoke(generate.main, [f"--network={pkl}", "--seeds=0", f"--outdir={tmp_path}/c",
                                               "--version", version])
        assert result.exit_code == 2 and f"{family}" in result.output and "--version 2" in result.output
    assert not (tmp_path / "c").exists()


def test_bg_white_alias(tmp_path):
    from sg2_cli import bg_white
    rnd = np.random.RandomState(0)
    for folder, array in [("img", rnd.randint(0, 200, (32, 16, 3), dtype=np.uint8)),
                          ("seg", (rnd.rand(32, 16) > 0.5).astype(np.uint8) * 255)]:
        os.makedirs(tmp_path / folder)
        PIL.Image.fromarray(array).save(tmp_path / folder / "p.png")
    runner = CliRunner()
    ours = runner.invoke(bg_white.main, [f"--images={tmp_path}/img", f"--masks={tmp_path}/seg",
                                         f"--outdir={tmp_path}/a"])
    original = runner.invoke(bg_white.main, ["--raw_img_dir", f"{tmp_path}/img", "--raw_seg_dir", f"{tmp_path}/seg",
                                             "--outdir", f"{tmp_path}/b"])
    assert ours.exit_code == original.exit_code == 0, original.output
    assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / "a" / "p.png")),
                          np.asarray(PIL.Image.open(tmp_path / "b" / "p.png")))
