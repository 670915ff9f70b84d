"""Generator and discriminator at several aspect ratios: shapes, gradients, and checkpoint round trips."""
import os
import pickle
import subprocess
import sys

import pytest
import torch

import legacy
from helpers import quick_every
from training import networks
from training.checkpoint import unpickler

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATIOS = [(1, 1), (2, 1), (1, 2), (4, 1)]


def _tiny_nets(aspect_ratio, c_dim=0, res=32):
    torch.manual_seed(0)
    G = networks.Generator(z_dim=16, c_dim=c_dim, w_dim=16, img_resolution=res, img_channels=3,
                           mapping_kwargs=dict(num_layers=2),
                           synthesis_kwargs=dict(channel_base=256, channel_max=16, num_fp16_res=2, conv_clamp=256),
                           aspect_ratio=aspect_ratio)
    D = networks.Discriminator(c_dim=c_dim, img_resolution=res, img_channels=3, channel_base=256, channel_max=16,
                               num_fp16_res=2, conv_clamp=256, epilogue_kwargs=dict(mbstd_group_size=2),
                               aspect_ratio=aspect_ratio)
    return G, D


@pytest.mark.parametrize("aspect_ratio", quick_every(RATIOS, 2))
def test_forward_backward(aspect_ratio):
    G, D = _tiny_nets(aspect_ratio)
    height = 32 * aspect_ratio[0] // max(aspect_ratio)
    width = 32 * aspect_ratio[1] // max(aspect_ratio)
    z = torch.randn([4, G.z_dim])
    c = torch.zeros([4, 0])
    img = G(z, c)
    assert img.shape == (4, 3, height, width) and (G.img_height, G.img_width) == (height, width)
    logits = D(img, c)
    assert logits.shape == (4, 1)
    logits.sum().backward()
    for name, param in list(G.named_parameters()) + list(D.named_parameters()):
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert G.synthesis.b4.const.shape[1:] == (4 * aspect_ratio[0] // max(aspect_ratio),
                                               4 * aspect_ratio[1] // max(aspect_ratio))


def test_square_false_means_two_to_one():
    G = networks.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                           mapping_kwargs=dict(num_layers=1), synthesis_kwargs=dict(channel_base=64, channel_max=8),
                           square=False)
    assert G.aspect_ratio == (2, 1) and (G.img_height, G.img_width) == (16, 8)
    assert G.synthesis.b16.conv1.noise_const.shape == (16, 8)
    with pytest.raises(ValueError):
        networks.resolve_aspect_ratio((1, 2), square=True)
    with pytest.raises(ValueError):
        networks.resolve_aspect_ratio((3, 1))


def test_conditional_nets_use_labels():
    G, D = _tiny_nets((2, 1), c_dim=3)
    z = torch.randn([2, G.z_dim]).repeat([2, 1])
    c = torch.eye(3)[[0, 0, 1, 1]]
    img = G(z, c, noise_mode="const")
    assert not torch.allclose(img[0], img[2])
    # D: the same image under each label gives three different logits; the label alone changes them (the
    # minibatch std layer mixes a group's images, so every group is made of one image repeated).
    same = img[:1].detach().repeat([4, 1, 1, 1])
    logits = D(same, torch.eye(3)[[0, 1, 2, 0]])
    assert logits.shape == (4, 1)
    assert len(set(logits[:3].flatten().tolist())) == 3 and logits[0] == logits[3]
    torch.testing.assert_close(D(same, torch.eye(3)[[1, 1, 1, 1]]), logits[1:2].repeat([4, 1]))


def test_w_avg_is_a_moving_average_of_the_mapping_outputs_in_training_only():
    # StyleGAN2-ADA's MappingNetwork: w_avg <- lerp(mean of this batch's w, w_avg, beta) per training call.
    G, _ = _tiny_nets((2, 1))
    G.mapping.w_avg.normal_()
    before = G.mapping.w_avg.clone()
    z, c = torch.randn([8, G.z_dim]), torch.zeros([8, 0])
    ws = G.mapping(z, c)
    beta = G.mapping.w_avg_beta
    torch.testing.assert_close(G.mapping.w_avg, beta * before + (1 - beta) * ws[:, 0].mean(0))
    G.eval()
    after_training_call = G.mapping.w_avg.clone()
    G.mapping(z, c)
    assert torch.equal(G.mapping.w_avg, after_training_call)


def _outputs(G, D):
    torch.manual_seed(1)
    z = torch.randn([2, G.z_dim])
    c = torch.zeros([2, G.c_dim])
    img = G(z, c, truncation_psi=0.8, noise_mode="const")
    return img, D(img, c)


@pytest.mark.slow
@pytest.mark.parametrize("aspect_ratio", RATIOS)
def test_saved_checkpoint_loads_back_identically(tmp_path, aspect_ratio):
    G, D = _tiny_nets(aspect_ratio)
    G.eval()
    D.eval()
    path = tmp_path / "net.pkl"
    legacy.save_network_pkl(path, dict(G=G, D=D, G_ema=G, training_set_kwargs=dict(path="x.zip")))
    with open(path, "rb") as f:
        nets = legacy.load_network_pkl(f)
    ref_img, ref_logits = _outputs(G, D)
    img, logits = _outputs(nets["G_ema"], nets["D"])
    torch.testing.assert_close(img, ref_img, rtol=0, atol=0)
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=0)
    assert nets["training_set_kwargs"].path == "x.zip"


@pytest.mark.slow
def test_saved_checkpoint_embeds_our_source_for_the_original_loader(tmp_path):
    # Tools built on the original loader unpickle the file and execute the embedded module source.
    G, _ = _tiny_nets((2, 1))
    G.eval()
    path = tmp_path / "net.pkl"
    legacy.save_network_pkl(path, dict(G_ema=G))
    ref = _outputs(G, _tiny_nets((2, 1))[1])[0]
    torch.save(ref, tmp_path / "ref.pt")
    script = f"""
import pickle, sys, torch
import torch_utils.persistence
data = pickle.load(open({str(path)!r}, 'rb'))
G = data['G_ema']
assert 'training.networks' not in sys.modules, 'embedded source should have been used'
assert type(G).__module__.startswith('_imported_module_'), type(G).__module__
torch.manual_seed(1)
z = torch.randn([2, G.z_dim])
img = G(z, torch.zeros([2, 0]), truncation_psi=0.8, noise_mode='const')
torch.testing.assert_close(img, torch.load({str(tmp_path / 'ref.pt')!r}), rtol=0, atol=0)
print('ok')
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_checkpoint_names_only_admitted_globals(tmp_path):
    G, D = _tiny_nets((2, 1))
    path = tmp_path / "net.pkl"
    legacy.save_network_pkl(path, dict(G=G, D=D))
    names = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            names.add((module, name))
            return super().find_class(module, name)

    with open(path, "rb") as f:
        Recorder(f).load()
    assert ("torch_utils.persistence", "_reconstruct_persistent_obj") in names
    assert names <= set(unpickler.ALLOWED_GLOBALS), names - set(unpickler.ALLOWED_GLOBALS)
