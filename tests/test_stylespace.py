"""Style-space (S) edits as StyleGAN-Human makes them: the right layers and channels, files read as arrays only."""
import csv
import os
import pickle
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch

from dnnlib.util import UserError
from helpers_rosinality import Generator as RosG
from latent import space, stylespace
from sg2_cli import edit
from training import networks
from training.checkpoint import rosinality
from training.checkpoint.rebuild import network_tensors

CHANNELS = {4: 32, 8: 32, 16: 16, 32: 8}


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    G = networks.Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3, square=False,
                           mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=32))
    with torch.no_grad():
        for name, tensor in network_tensors(G).items():
            if not name.endswith("resample_filter"):
                tensor.add_(0.2 * torch.randn(tensor.shape))
    return G.eval()


def style_channels(G):
    return [conv.in_channels for _, conv in stylespace.style_layers(G)]


def write_direction(folder, vectors, protocol=4, shape_1c=False):
    os.makedirs(folder, exist_ok=True)
    for layer, vector in vectors.items():
        with open(os.path.join(folder, f"style_vect_mean_{layer}.pkl"), "wb") as f:
            pickle.dump(vector[None] if shape_1c else vector, f, protocol=protocol)
    return str(folder)


def random_vectors(G, seed=1, dtype=np.float32):
    rng = np.random.RandomState(seed)
    return {layer: rng.randn(c).astype(dtype) for layer, c in enumerate(style_channels(G))}


class StyleRecorder:
    """Records the styles each modulated convolution receives (demodulated ones: toRGB excluded)."""

    def __init__(self, monkeypatch):
        self.styles = []
        original = networks.modulated_conv2d

        def recording(*args, **kwargs):
            if kwargs.get("demodulate", True):
                self.styles.append(kwargs["styles"].detach().clone())
            return original(*args, **kwargs)
        monkeypatch.setattr(networks, "modulated_conv2d", recording)


def styles_by_hand(G, ws):
    """s_i = A_i w_i + b_i with the equalized-lr gains, for each style layer i (ws feeds layer i with w_i)."""
    result = []
    for layer, (_, conv) in enumerate(stylespace.style_layers(G)):
        w = ws[:, layer]
        result.append(w @ (conv.affine.weight * conv.affine.weight_gain).T + conv.affine.bias * conv.affine.bias_gain)
    return result


@pytest.mark.parametrize("protocol, shape_1c, dtype", [(2, False, np.float64), (4, True, np.float32),
                                                         (5, False, np.float32)])
def test_a_folder_of_pickles_edits_the_chosen_layers_by_the_vectors(G, tmp_path, monkeypatch, protocol, shape_1c,
                                                                    dtype):
    vectors = random_vectors(G, dtype=dtype)
    folder = write_direction(tmp_path / "upper_length", vectors, protocol, shape_1c)
    loaded, layers = stylespace.prepare_edit(G, folder, "1-3,5")
    assert layers == [1, 2, 3, 5] and sorted(loaded) == sorted(vectors)
    ws = space.seeds_to_ws(G, [7])
    recorder = StyleRecorder(monkeypatch)
    stylespace.edit_strip(G, ws, loaded, layers, [0.0, 2.5])
    expected = styles_by_hand(G, ws)
    n = len(expected)
    assert len(recorder.styles) == 2 * n
    for layer in range(n):
        offset = 2.5 * torch.from_numpy(vectors[layer].astype(np.float32)) if layer in layers else 0
        torch.testing.assert_close(recorder.styles[layer], expected[layer], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(recorder.styles[n + layer], expected[layer] + offset, rtol=1e-5, atol=1e-5)


def test_the_edit_draws_what_stylegan_human_s_decoder_draws(G, tmp_path):
    # StyleGAN-Human's decoder adds style_vect * strength to style_space[i], the modulation output of rosinality's
    # conv1, convs[0], convs[1], ... (its conv_warper), with the stored noise buffers.
    vectors = random_vectors(G, seed=3)
    loaded, layers = stylespace.prepare_edit(G, write_direction(tmp_path / "d", vectors), None)
    ref = RosG(32, 32, 2, channels=CHANNELS, aspect=(2, 1))
    ref.load_state_dict(rosinality.rosinality_dict({"G_ema": G}, custom_channels=True)["g_ema"], strict=True)
    ws = space.seeds_to_ws(G, [11], truncation_psi=0.8)
    strip = stylespace.edit_strip(G, ws, loaded, layers, [1.5])
    with torch.no_grad():
        img = ref.synthesis(ws, [torch.from_numpy(vectors[i]) * 1.5 for i in range(len(vectors))])
    expected = space.to_uint8(img)[0].numpy()
    assert strip.shape == expected.shape == (32, 16, 3)
    assert np.abs(strip.astype(int) - expected.astype(int)).max() <= 1


def test_statis_masks_the_channels_of_the_one_layer(G, tmp_path, monkeypatch):
    vectors = random_vectors(G, seed=4)
    folder = write_direction(tmp_path / "bottom_length", vectors)
    channels = style_channels(G)[3]
    strengths = np.random.RandomState(5).randn(channels) * 0.01
    statis = tmp_path / "statis.csv"
    with open(statis, "w", newline="") as f:  # pandas' to_csv layout: an index column, rows in any order
        writer = csv.writer(f)
        writer.writerow(["", "channel", "strength"])
        for row, channel in enumerate(np.random.RandomState(6).permutation(channels)):
            writer.writerow([row, channel, strengths[channel]])
    loaded, layers = stylespace.prepare_edit(G, folder, "3", str(statis), 0.008)
    mask = np.abs(strengths) > 0.008
    assert layers == [3] and 0 < mask.sum() < channels
    np.testing.assert_array_equal(loaded[3], vectors[3] * mask)
    recorder = StyleRecorder(monkeypatch)
    ws = space.seeds_to_ws(G, [2])
    stylespace.edit_strip(G, ws, loaded, layers, [5.0])
    changed = (recorder.styles[3] - styles_by_hand(G, ws)[3]).abs()[0] > 1e-4
    np.testing.assert_array_equal(changed.numpy(), mask)
    for message, args in [("give both", (str(statis), None)), ("masks one layer", (str(statis), 0.1))]:
        with pytest.raises(UserError, match=message):
            stylespace.prepare_edit(G, folder, "3-4" if message == "masks one layer" else "3", *args)


def test_a_pickle_of_anything_but_an_array_is_refused_and_nothing_runs(G, tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    cases = [(Payload(), "refused without running it"), ({"a": np.zeros(3)}, "opcode"), ([1.0, 2.0], "opcode"),
             (np.array([object()], dtype=object), "refused"), (np.float32(3), "refused")]
    for index, (value, message) in enumerate(cases):
        folder = tmp_path / f"case{index}"
        write_direction(folder, {0: np.zeros(32, np.float32)})
        with open(folder / "style_vect_mean_1.pkl", "wb") as f:
            pickle.dump(value, f)
        with pytest.raises(UserError, match=f"style_vect_mean_1.pkl: .*{message}") as info:
            stylespace.load_style_direction(folder)
        assert "\n" not in str(info.value)
    assert not marker.exists()


def test_memo_and_size_tricks_are_refused():
    huge_memo = b"\x80\x02K\x01r\xff\xff\xff\x7f."  # BININT1 1, LONG_BINPUT 2**31 - 1, STOP
    with pytest.raises(UserError, match="memo index 2147483647 out of range"):
        stylespace.read_array_pickle(huge_memo, "v.pkl")
    blob = pickle.dumps(np.arange(5, dtype=np.float32), protocol=2)
    assert blob.count(b"K\x05\x85") == 1  # the shape (5,)
    with pytest.raises(UserError, match="array data whose size does not match its shape"):
        stylespace.read_array_pickle(blob.replace(b"K\x05\x85", b"K\x06\x85"), "v.pkl")
    empty = pickle.dumps(np.zeros(0, np.float32), protocol=2)  # its data is spelt bytes()
    assert stylespace.read_array_pickle(empty, "v.pkl").shape == (0,)


def test_numpy_1_pickles_load(tmp_path):
    vector = np.arange(5, dtype=np.float32)
    blob = pickle.dumps(vector, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in blob
    np.testing.assert_array_equal(stylespace.read_array_pickle(blob, "v.pkl"), vector)


def test_wrong_length_and_missing_layers_are_one_line_errors(G, tmp_path):
    vectors = random_vectors(G)
    vectors[4] = np.zeros(7, np.float32)
    folder = write_direction(tmp_path / "d", vectors)
    name = stylespace.style_layers(G)[4][0]
    with pytest.raises(UserError, match=f"the vector of style layer 4 \\({name}\\) has 7 values; that layer has "
                                        f"{style_channels(G)[4]} style channels"):
        stylespace.prepare_edit(G, folder)
    assert stylespace.prepare_edit(G, folder, "0-3")[1] == [0, 1, 2, 3]
    with pytest.raises(UserError, match="no vector for layer 9"):
        stylespace.prepare_edit(G, write_direction(tmp_path / "e", {0: np.zeros(32)}), "0,9")
    with pytest.raises(UserError, match="no style_vect_mean_<layer>.pkl"):
        stylespace.prepare_edit(G, str(tmp_path))


def test_npz_npy_and_zip_directions_read_as_the_folder(G, tmp_path):
    vectors = random_vectors(G, seed=8)
    folder = write_direction(tmp_path / "upper_length", vectors)
    np.savez(tmp_path / "d.npz", **{f"style_vect_mean_{i}": v for i, v in vectors.items()})
    archive = tmp_path / "upper_length.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in os.listdir(folder):
            z.write(os.path.join(folder, name), f"upper_length/{name}")
    for path in (tmp_path / "d.npz", archive):
        loaded = stylespace.load_style_direction(path)
        assert sorted(loaded) == sorted(vectors)
        for layer, vector in vectors.items():
            np.testing.assert_array_equal(loaded[layer], vector)
    np.save(tmp_path / "rows.npy", np.stack([vectors[0], vectors[1]]))  # equal lengths: one row per layer
    rows = stylespace.load_style_direction(tmp_path / "rows.npy")
    assert sorted(rows) == [0, 1] and np.array_equal(rows[1], vectors[1])


def test_default_call_unchanged_and_offsets_checked(G):
    ws = space.seeds_to_ws(G, [1])
    n = len(stylespace.style_layers(G))
    with torch.no_grad():
        plain = G.synthesis(ws, noise_mode="const")
        assert torch.equal(plain, G.synthesis(ws, noise_mode="const", style_offsets=[None] * n))
        with pytest.raises(ValueError, match=f"style_offsets: 3 entries; this network has {n}"):
            G.synthesis(ws, style_offsets=[None] * 3)


def test_cli_writes_a_strip_per_seed(G, tmp_path):
    net = tmp_path / "g.pkl"
    from training.checkpoint.pickle_format import save_network_pkl
    save_network_pkl(net, {"G_ema": G})
    folder = write_direction(tmp_path / "d", random_vectors(G, seed=9))
    edit.main.main(["stylespace", f"--network={net}", f"--direction={folder}", "--seeds=3-4", "--layers=0-4",
                    "--strengths=-1,0,2", "--trunc=0.8", "--device=cpu", f"--outdir={tmp_path / 'out'}"],
                   standalone_mode=False)
    vectors, layers = stylespace.prepare_edit(G, folder, "0-4")
    for seed in (3, 4):
        written = np.asarray(PIL.Image.open(tmp_path / "out" / f"seed{seed:04d}.png"))
        expected = stylespace.edit_strip(G, space.seeds_to_ws(G, [seed], 0.8), vectors, layers, [-1, 0, 2])
        assert written.shape == (32, 48, 3) and np.array_equal(written, expected)
    with pytest.raises(UserError, match="--statis and --threshold: give both"):
        edit.main.main(["stylespace", f"--network={net}", f"--direction={folder}", "--seeds=3", "--layers=2",
                        "--threshold=0.5", "--device=cpu", f"--outdir={tmp_path / 'masked'}"], standalone_mode=False)
    with pytest.raises(UserError, match="already exists"):
        edit.main.main(["stylespace", f"--network={net}", f"--direction={folder}", "--seeds=3", "--device=cpu",
                        f"--outdir={tmp_path / 'out'}"], standalone_mode=False)
