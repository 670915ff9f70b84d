"""rosinality's checkpoint format both ways, checked against a second implementation of its Generator and
Discriminator (helpers_rosinality.py) and against StyleGAN-Human's legacy.convert key mapping."""
import argparse
import io
import os

import numpy as np
import pytest
import torch

import legacy
from dnnlib.util import UserError
from helpers_rosinality import Discriminator as RosD, Generator as RosG
from training import networks
from training.checkpoint import rosinality
from training.checkpoint.contents import CheckpointError
from training.checkpoint.rebuild import network_tensors
from training.checkpoint.rosinality_layout import LayoutError

SMALL = dict(channel_base=256, channel_max=32)  # 4: 32, 8: 32, 16: 16, 32: 8 channels
SMALL_CHANNELS = {4: 32, 8: 32, 16: 16, 32: 8}
ASPECTS = [(1, 1), (2, 1)]


def randomize(net, seed):
    """Every tensor away from its initial value (the filters aside), as a trained network's would be."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in network_tensors(net).items():
            if not name.endswith("resample_filter"):
                tensor.add_(0.2 * torch.randn(tensor.shape, generator=gen))
    return net


def small_networks(aspect, seed=0, **d_kwargs):
    torch.manual_seed(seed)
    G = networks.Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3, aspect_ratio=aspect,
                           mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(SMALL))
    D = networks.Discriminator(c_dim=0, img_resolution=32, img_channels=3, aspect_ratio=aspect, **SMALL, **d_kwargs)
    G_ema = randomize(G, seed + 1)
    G = randomize(networks.Generator(**G_ema.init_kwargs), seed + 2)
    G.mapping.w_avg.copy_(G_ema.mapping.w_avg)  # training copies w_avg into G_ema
    return dict(G=G.eval(), D=randomize(D, seed + 3).eval(), G_ema=G_ema.eval())


def write_pt(data, path):
    buffer = io.BytesIO()
    torch.save(data, buffer)
    path.write_bytes(buffer.getvalue())
    return str(path)


@pytest.mark.parametrize("aspect", ASPECTS)
def test_nvidia_rosinality_nvidia_gives_the_same_tensors_bit_for_bit(aspect, tmp_path):
    nets = small_networks(aspect)
    keys = rosinality.export_rosinality(nets, tmp_path / "net.pt", custom_channels=True)
    assert keys == ["g_ema", "g", "d", "latent_avg"]
    back = legacy.load_checkpoint(str(tmp_path / "net.pt"))
    for key in ("G", "D", "G_ema"):
        ours, theirs = network_tensors(nets[key]), network_tensors(back[key])
        assert set(ours) == set(theirs)
        for name, tensor in ours.items():
            assert torch.equal(tensor, theirs[name]), f"{key}.{name}"
        assert back[key].aspect_ratio == tuple(aspect)


def _reference_networks(state, aspect):
    G = RosG(32, 32, 2, channels=SMALL_CHANNELS, aspect=aspect)
    G.load_state_dict(state["g_ema"], strict=True)
    D = RosD(32, channels=SMALL_CHANNELS, aspect=aspect)
    D.load_state_dict(state["d"], strict=True)
    return G.eval(), D.eval()


@pytest.mark.parametrize("aspect", ASPECTS)
def test_images_mapping_and_logits_match_rosinality_classes(aspect, one_torch_thread):
    nets = small_networks(aspect, seed=5)
    state = rosinality.rosinality_dict(nets, custom_channels=True)
    ref_G, ref_D = _reference_networks(state, aspect)
    z = torch.randn([3, 32])
    with torch.no_grad():
        ws = nets["G_ema"].mapping(z, None)
        np.testing.assert_allclose(ref_G.style(z).numpy(), ws[:, 0].numpy(), atol=1e-5, rtol=0)
        ours = nets["G_ema"].synthesis(ws, noise_mode="const")
        theirs = ref_G.synthesis(ws)
        assert ours.shape == (3, 3, 32, 32 * aspect[1] // aspect[0]) and theirs.shape == ours.shape
        np.testing.assert_allclose(theirs.numpy(), ours.numpy(), atol=1e-4, rtol=0)
        truncated, _ = ref_G([z], truncation=0.5, truncation_latent=state["latent_avg"])
        np.testing.assert_allclose(truncated.numpy(), nets["G_ema"](z, None, truncation_psi=0.5,
                                                                    noise_mode="const").numpy(), atol=1e-4, rtol=0)
        for batch in (4, 2):
            img = torch.rand([batch, 3, *ours.shape[2:]]) * 2 - 1
            np.testing.assert_allclose(ref_D(img).numpy(), nets["D"](img, None).numpy(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("aspect", ASPECTS)
def test_a_file_of_rosinality_train_py_loads_and_draws_what_its_generator_draws(aspect, tmp_path, one_torch_thread):
    torch.manual_seed(3)
    ref_G, ref_D = RosG(32, 32, 2, channels=SMALL_CHANNELS, aspect=aspect), RosD(32, channels=SMALL_CHANNELS,
                                                                                   aspect=aspect)
    for net in (ref_G, ref_D):
        with torch.no_grad():
            for tensor in list(net.parameters()):
                tensor.add_(0.2 * torch.randn_like(tensor))
    optimizer = torch.optim.Adam(ref_G.parameters(), lr=0.002, betas=(0.0, 0.99))
    ref_G.style(torch.randn([2, 32])).square().mean().backward()
    optimizer.step()  # moments in the file, as in a real one
    optimizer.zero_grad(set_to_none=True)
    args = argparse.Namespace(size=32, channel_multiplier=2, latent=32, n_mlp=2, ckpt=None, augment=False)
    path = write_pt({"g": ref_G.state_dict(), "d": ref_D.state_dict(), "g_ema": ref_G.state_dict(),
                     "g_optim": optimizer.state_dict(), "d_optim": optimizer.state_dict(), "args": args,
                     "ada_aug_p": 0.0}, tmp_path / "010000.pt")
    data = legacy.load_checkpoint(path)
    G, D = data["G_ema"].eval(), data["D"].eval()
    assert G.mapping.num_layers == 2 and G.img_resolution == 32 and G.aspect_ratio == tuple(aspect)
    z = torch.randn([2, 32])
    with torch.no_grad():
        ws = ref_G.style(z)[:, None].repeat(1, ref_G.n_latent, 1)
        np.testing.assert_allclose(G.mapping(z, None).numpy(), ws.numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(G.synthesis(ws, noise_mode="const").numpy(), ref_G.synthesis(ws).numpy(),
                                   atol=1e-4, rtol=0)
        img = torch.rand([4, 3, 32, 32 * aspect[1] // aspect[0]]) * 2 - 1
        np.testing.assert_allclose(D(img, None).numpy(), ref_D(img).numpy(), atol=1e-4, rtol=0)
        # No latent_avg in the file: w_avg is the mean w of seeded samples, close to rosinality's mean_latent.
        np.testing.assert_allclose(G.mapping.w_avg.numpy(), ref_G.mean_latent(20000)[0].numpy(), atol=0.05)


@pytest.mark.slow
def test_rosinality_channel_table_without_custom_channels(tmp_path, one_torch_thread):
    torch.manual_seed(0)
    G = randomize(networks.Generator(z_dim=64, c_dim=0, w_dim=64, img_resolution=16, img_channels=3,
                                     mapping_kwargs=dict(num_layers=2), square=False), 1).eval()
    assert rosinality.export_rosinality({"G_ema": G}, tmp_path / "g.pt") == ["g_ema", "latent_avg"]
    ref_G = RosG(16, 64, 2, channel_multiplier=2, aspect=(2, 1))  # rosinality's own table: 512 channels
    ref_G.load_state_dict(torch.load(tmp_path / "g.pt", weights_only=True)["g_ema"], strict=True)
    ws = G.mapping(torch.randn([1, 64]), None)
    with torch.no_grad():
        np.testing.assert_allclose(ref_G.synthesis(ws).numpy(), G.synthesis(ws, noise_mode="const").numpy(),
                                   atol=1e-4, rtol=0)
    assert rosinality.channel_multiplier_of({"G_ema": G}) == 1  # at 16 pixels every multiplier builds 512


def stylegan_human_convert(G_ema):
    """What StyleGAN-Human's legacy.convert writes for a generator, rewritten from its key mapping: mapping.fcI ->
    style.{I+1}; b4: input.input (const.unsqueeze(0)), conv1, to_rgb1, noises.noise_0; block b(4*2^i):
    convs.{2i-2+k} from conv{k}, noises.noise_{2i-1+k}, to_rgbs.{i-1}, and both blur kernels of the level
    4 * synthesis.b4.resample_filter; latent_avg = mapping.w_avg."""
    nv = G_ema.state_dict()
    out = {}
    for i in range(G_ema.mapping.num_layers):
        out[f"style.{i + 1}.weight"] = nv[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = nv[f"mapping.fc{i}.bias"]

    def conv(ros, name):
        out[f"{ros}.conv.weight"] = nv[f"{name}.weight"].unsqueeze(0)
        out[f"{ros}.activate.bias"] = nv[f"{name}.bias"]
        out[f"{ros}.conv.modulation.weight"] = nv[f"{name}.affine.weight"]
        out[f"{ros}.conv.modulation.bias"] = nv[f"{name}.affine.bias"]
        out[f"{ros}.noise.weight"] = nv[f"{name}.noise_strength"].unsqueeze(0)

    def rgb(ros, block):
        out[f"{ros}.conv.weight"] = nv[f"{block}.torgb.weight"].unsqueeze(0)
        out[f"{ros}.bias"] = nv[f"{block}.torgb.bias"].unsqueeze(0).unsqueeze(-1).unsqueeze(-1)
        out[f"{ros}.conv.modulation.weight"] = nv[f"{block}.torgb.affine.weight"]
        out[f"{ros}.conv.modulation.bias"] = nv[f"{block}.torgb.affine.bias"]

    out["input.input"] = nv["synthesis.b4.const"].unsqueeze(0)
    conv("conv1", "synthesis.b4.conv1")
    out["noises.noise_0"] = nv["synthesis.b4.conv1.noise_const"].unsqueeze(0).unsqueeze(0)
    rgb("to_rgb1", "synthesis.b4")
    for i in range(1, int(np.log2(G_ema.img_resolution)) - 1):
        for k in range(2):
            conv(f"convs.{2 * i - 2 + k}", f"synthesis.b{4 * 2 ** i}.conv{k}")
            out[f"noises.noise_{2 * i - 1 + k}"] = nv[f"synthesis.b{4 * 2 ** i}.conv{k}.noise_const"][None, None]
        rgb(f"to_rgbs.{i - 1}", f"synthesis.b{4 * 2 ** i}")
        out[f"convs.{2 * i - 2}.conv.blur.kernel"] = 4 * nv["synthesis.b4.resample_filter"]
        out[f"to_rgbs.{i - 1}.upsample.kernel"] = 4 * nv["synthesis.b4.resample_filter"]
    return {"g_ema": out, "latent_avg": nv["mapping.w_avg"]}


def test_writer_matches_stylegan_human_convert_on_the_fixture(compat_dir):
    G_ema = legacy.load_network(os.path.join(compat_dir, "tiny_64x32.pkl"))
    theirs = stylegan_human_convert(G_ema)
    with pytest.raises(LayoutError, match="channels per resolution .* --custom-channels"):
        rosinality.rosinality_dict({"G_ema": G_ema})
    ours = rosinality.rosinality_dict({"G_ema": G_ema}, custom_channels=True)
    assert list(ours) == ["g_ema", "latent_avg"] and set(ours["g_ema"]) == set(theirs["g_ema"])
    for key, tensor in theirs["g_ema"].items():
        assert torch.equal(ours["g_ema"][key], tensor), key
    assert torch.equal(ours["latent_avg"], theirs["latent_avg"])


@pytest.mark.slow
def test_generate_draws_from_a_stylegan_human_conversion_what_it_draws_from_the_pickle(compat_dir, tmp_path,
                                                                                       one_torch_thread):
    import PIL.Image
    from sg2_cli import generate
    pkl = os.path.join(compat_dir, "tiny_64x32.pkl")
    converted = write_pt(stylegan_human_convert(legacy.load_network(pkl)), tmp_path / "tiny_64x32.pth")
    for name, network in [("pkl", pkl), ("pth", converted)]:
        generate.main.main([f"--network={network}", "--seeds=0-2", "--trunc=0.7", "--device=cpu",
                            f"--outdir={tmp_path / name}"], standalone_mode=False)
    for seed in range(3):
        a = np.asarray(PIL.Image.open(tmp_path / "pkl" / f"seed{seed:04d}.png"))
        b = np.asarray(PIL.Image.open(tmp_path / "pth" / f"seed{seed:04d}.png"))
        assert a.shape == (64, 32, 3) and np.array_equal(a, b)


def test_networks_rosinality_cannot_express_are_one_line_errors():
    cases = [
        (dict(G_ema=networks.Generator(32, 4, 32, 32, 3, synthesis_kwargs=SMALL)), "conditional generator"),
        (dict(G_ema=networks.Generator(32, 0, 32, 32, 3, aspect_ratio=(1, 2), synthesis_kwargs=SMALL)),
         "aspect ratio 1:2"),
        (dict(G_ema=networks.Generator(32, 0, 32, 32, 3, synthesis_kwargs=dict(SMALL, architecture="resnet"))),
         "'resnet' synthesis architecture"),
        (dict(G_ema=networks.Generator(16, 0, 32, 32, 3, synthesis_kwargs=SMALL)), "z_dim=16, w_dim=32"),
        (dict(G_ema=networks.Generator(32, 0, 32, 32, 3, mapping_kwargs=dict(lr_multiplier=0.1),
                                       synthesis_kwargs=SMALL)), "mapping network other than rosinality's"),
        (dict(D=networks.Discriminator(0, 32, 3, architecture="skip", **SMALL)), "'skip' architecture"),
        (dict(D=networks.Discriminator(2, 32, 3, **SMALL)), "conditional discriminator"),
        (dict(D=networks.Discriminator(0, 32, 3, epilogue_kwargs=dict(mbstd_group_size=8), **SMALL)),
         "minibatch stddev group 8"),
    ]
    for data, message in cases:
        with pytest.raises(LayoutError, match=message) as info:
            rosinality.rosinality_dict(data, custom_channels=True)
        assert "\n" not in str(info.value) and "rosinality" in str(info.value)


def test_damaged_foreign_and_hostile_files_are_refused_with_the_file_named(tmp_path):
    state = rosinality.rosinality_dict(small_networks((2, 1)), custom_channels=True)
    extra = dict(state, g_ema=dict(state["g_ema"], **{"convs.0.conv.extra": torch.zeros(1)}))
    wrong = dict(state, g_ema=dict(state["g_ema"], **{"convs.3.conv.weight": torch.zeros(1, 16, 8, 3, 3)}))
    blur = dict(state, d=dict(state["d"], **{"convs.1.skip.0.kernel": torch.ones(4, 4)}))
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    cases = [(extra, "has tensor\\(s\\) that rosinality's classes do not: convs.0.conv.extra"),
             (wrong, "'g_ema' tensor 'convs.3.conv.weight' has shape \\[1, 16, 8, 3, 3\\], expected "
                     "\\[1, 16, 16, 3, 3\\]"),
             (blur, "'d' tensor 'convs.1.skip.0.kernel' is not the \\[1, 3, 3, 1\\] blur kernel"),
             ({"model": {}}, "holds none of g_ema, g, d"),
             ({"g_ema": state["g_ema"], "latent_avg": torch.zeros(7)}, "'latent_avg' of shape \\[7\\]"),
             ({"g_ema": state["g_ema"], "x": Payload()}, "names the global '(io|builtins).open'")]
    for index, (data, message) in enumerate(cases):
        path = write_pt(data, tmp_path / f"case{index}.pt")
        with pytest.raises(CheckpointError, match=f"case{index}.pt: .*{message}"):
            legacy.load_network(path)
    assert not marker.exists()


@pytest.mark.slow
def test_train_resume_fine_tunes_from_a_rosinality_file(tmp_path, one_torch_thread):
    from helpers_training import load, make_figures, snapshots, tiny_options, train_in_process
    nets = small_networks((2, 1), seed=11)
    path = tmp_path / "rosinality.pt"
    rosinality.export_rosinality(nets, path, custom_channels=True)
    opts = {k: v for k, v in tiny_options(make_figures(tmp_path / "figures.zip")).items()
            if k not in ("cbase", "cmax", "map")}  # the architecture comes from the file
    status, run_dir = train_in_process(tmp_path / "runs", kimg=0.008, resume=str(path), **opts)
    assert status == 0
    first = load(snapshots(run_dir)[0])
    for key in ("G", "G_ema", "D"):
        ours = torch.cat([t.detach().flatten() for _, t in sorted(network_tensors(first[key]).items())])
        theirs = torch.cat([t.detach().flatten() for _, t in sorted(network_tensors(nets[key]).items())])
        assert float((ours - theirs).norm() / theirs.norm()) < 0.05, key  # a few steps from the file's weights
    assert "G <- G, G_ema <- G_ema, D <- D" in open(os.path.join(run_dir, "log.txt")).read()


def test_convert_cli_writes_rosinality_and_reads_it_back(tmp_path, capsys):
    from sg2_cli import convert
    from training.checkpoint.pickle_format import save_network_pkl
    nets = small_networks((2, 1), seed=13)
    pkl = tmp_path / "net.pkl"
    save_network_pkl(pkl, nets)
    out = tmp_path / "net.pt"
    with pytest.raises(UserError, match="--to: required for a .pt output; --to=rosinality"):
        convert.main.main([f"--network={pkl}", f"--out={out}"], standalone_mode=False)
    with pytest.raises(UserError, match="--to=onnx does not match"):
        convert.main.main([f"--network={pkl}", f"--out={out}", "--to=onnx"], standalone_mode=False)
    with pytest.raises(UserError, match="channels per resolution .* --custom-channels"):
        convert.main.main([f"--network={pkl}", f"--out={out}", "--to=rosinality"], standalone_mode=False)
    with pytest.raises(UserError, match="--trunc and --onnx-input apply to --to=onnx only"):
        convert.main.main([f"--network={pkl}", f"--out={out}", "--to=rosinality", "--trunc=0.5"],
                          standalone_mode=False)
    assert not out.exists()
    convert.main.main([f"--network={pkl}", f"--out={out}", "--to=rosinality", "--custom-channels"],
                      standalone_mode=False)
    line = capsys.readouterr().out
    assert "Wrote g_ema, g, d, latent_avg to" in line and "Generator(size=32, style_dim=32, n_mlp=2)" in line
    assert "StyleGAN-Human's 2:1 variant" in line
    back = tmp_path / "back.pkl"
    convert.main.main([f"--network={out}", f"--out={back}"], standalone_mode=False)
    data = legacy.load_checkpoint(str(back))
    for key in ("G", "D", "G_ema"):
        assert all(torch.equal(t, network_tensors(nets[key])[name]) for name, t in network_tensors(data[key]).items())
    with pytest.raises(UserError, match="already exists"):
        convert.main.main([f"--network={pkl}", f"--out={out}", "--to=rosinality", "--custom-channels"],
                          standalone_mode=False)


def test_legacy_convert_and_an_encoder_s_decoder(tmp_path):
    nets = small_networks((2, 1), seed=17)
    pkl = tmp_path / "net.pkl"
    legacy.save_network_pkl(str(pkl), {"G_ema": nets["G_ema"]})
    legacy.convert(str(pkl), str(tmp_path / "net.pth"))  # StyleGAN-Human's name and signature
    written = torch.load(tmp_path / "net.pth", weights_only=True)
    assert set(written) == {"g_ema", "latent_avg"}
    state = written["g_ema"]
    n_latent = nets["G_ema"].num_ws
    encoder_file = {"state_dict": {**{f"decoder.{k}": v for k, v in state.items()},
                                   "encoder.body.0.weight": torch.zeros(4, 3, 3, 3)},
                    "latent_avg": written["latent_avg"][None].repeat(n_latent, 1),  # as e4e stores it
                    "opts": {"encoder_type": "Encoder4Editing", "stylegan_size": 32}}
    G = legacy.load_network(write_pt(encoder_file, tmp_path / "e4e.pt"))
    for name, tensor in network_tensors(nets["G_ema"]).items():
        assert torch.equal(network_tensors(G)[name], tensor), name
