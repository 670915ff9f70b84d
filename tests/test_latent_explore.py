"""Style mixing, SeFa directions, editing and interpolation videos (latent/, style_mixing.py, edit.py, gen_video.py)."""
import os
import pickle
import re

import numpy as np
import PIL.Image
import pytest
import torch

from helpers_latent import reference_image, reference_ws, run_tool, save_generator, tiny_generator
from latent import directions, interpolation, space, video


def _png(path):
    return np.array(PIL.Image.open(path))


# ----------------------------------------------------------------------------
# Layers and style mixing.


def test_layer_names_and_ranges():
    assert space.parse_layers("coarse", 18) == [0, 1, 2, 3]
    assert space.parse_layers("middle", 18) == [4, 5, 6, 7]
    assert space.parse_layers("fine", 18) == list(range(8, 18))
    assert space.parse_layers("coarse,10-11", 16) == [0, 1, 2, 3, 10, 11]
    assert space.parse_layers("all", 10) == list(range(10))
    assert space.parse_layers("", 10) == []
    with pytest.raises(ValueError, match="fine"):
        space.parse_layers("fine", 8)  # a 32x16 network has no 64-pixel layers
    with pytest.raises(ValueError, match="0-9"):
        space.parse_layers("3-12", 10)


@pytest.mark.parametrize("lo,hi", [(0, 3), (4, 9), (2, 2)])
def test_mixing_equals_hand_built_ws(lo, hi):
    G = tiny_generator(res=64)
    rows, cols, pairs = space.style_mixing(G, [5], [7], list(range(lo, hi + 1)))
    row_ws, col_ws = reference_ws(G, 5), reference_ws(G, 7)
    by_hand = torch.cat([row_ws[:, :lo], col_ws[:, lo:hi + 1], row_ws[:, hi + 1:]], dim=1)
    assert np.array_equal(pairs[(5, 7)], reference_image(G, by_hand))
    assert np.array_equal(rows[0], reference_image(G, row_ws)) and np.array_equal(cols[0], reference_image(G, col_ws))
    assert not np.array_equal(pairs[(5, 7)], rows[0])  # the mixed layers do change the image


def test_mixing_no_layers_gives_row_image():
    G = tiny_generator(res=64)
    rows, _cols, pairs = space.style_mixing(G, [3, 4], [8], [])
    assert np.array_equal(pairs[(3, 8)], rows[0]) and np.array_equal(pairs[(4, 8)], rows[1])


@pytest.mark.slow
@pytest.mark.parametrize("aspect_ratio", [(1, 2), (1, 1), (2, 1)])
def test_style_mixing_tool_grid(tmp_path, aspect_ratio):
    G = tiny_generator(aspect_ratio, res=32)
    pkl = save_generator(G, tmp_path / "G.pkl")
    result = run_tool("style_mixing.py", f"--network={pkl}", "--rows=1,2", "--cols=3-5", "--styles=coarse",
                      f"--outdir={tmp_path}/out", "--device=cpu")
    assert result.returncode == 0, result.stderr
    grid = _png(tmp_path / "out" / "grid.png")
    h, w = G.img_height, G.img_width
    assert grid.shape == (3 * h, 4 * w, 3)
    assert not grid[:h, :w].any()  # the empty corner
    pair = _png(tmp_path / "out" / "2-4.png")
    assert np.array_equal(grid[2 * h:3 * h, 2 * w:3 * w], pair)  # row seed 2 (row 2), column seed 4 (column 2)
    hand = torch.cat([reference_ws(G, 4)[:, :4], reference_ws(G, 2)[:, 4:]], dim=1)
    assert np.array_equal(pair, reference_image(G, hand))
    assert np.array_equal(grid[0:h, w:2 * w], reference_image(G, reference_ws(G, 3)))  # top row: column sources
    assert np.array_equal(grid[h:2 * h, 0:w], reference_image(G, reference_ws(G, 1)))  # left column: row sources


# ----------------------------------------------------------------------------
# SeFa.


def _numpy_sefa(G, pattern):
    """An independent SeFa: affine weights by tensor name, numpy's symmetric eigensolver."""
    rows = [p.detach().double().numpy() for name, p in G.named_parameters() if re.fullmatch(pattern, name)]
    A = np.concatenate(rows)
    A = A / np.linalg.norm(A, axis=1, keepdims=True)
    values, vectors = np.linalg.eigh(A.T @ A)
    return values[::-1], vectors[:, ::-1].T


@pytest.mark.parametrize("layers,pattern", [
    ("all", r"synthesis\.b\d+\.conv[01]\.affine\.weight"),
    ("coarse", r"synthesis\.b(4\.conv1|8\.conv[01]|16\.conv0)\.affine\.weight"),
])
def test_sefa_matches_independent_eigendecomposition(layers, pattern):
    G = tiny_generator(res=64)
    found, eigenvalues = directions.sefa(G, space.parse_layers(layers, G.num_ws), num=6)
    values, vectors = _numpy_sefa(G, pattern)
    assert found.shape == (6, G.w_dim) and found.dtype == torch.float32
    assert np.allclose(eigenvalues.numpy(), values[:6], rtol=1e-9)
    assert np.all(np.diff(eigenvalues.numpy()) <= 0)  # sorted, largest first
    d = found.double().numpy()
    assert np.allclose(d @ d.T, np.eye(6), atol=1e-6)  # orthonormal
    assert np.allclose(np.abs(np.sum(d * vectors[:6], axis=1)), 1, atol=1e-5)  # the same axes up to sign
    peaks = d[np.arange(6), np.abs(d).argmax(axis=1)]
    assert np.all(peaks > 0)  # sign rule: the largest-magnitude component is positive


def test_strength_zero_is_the_unedited_image_bitwise():
    G = tiny_generator(res=32)
    ws = reference_ws(G, 11)
    direction = directions.sefa(G, list(range(G.num_ws)), num=1)[0][0] * 3
    strip = directions.edit_strip(G, ws, direction, [-2, 0, 2], list(range(G.num_ws)))
    w = G.img_width
    assert np.array_equal(strip[:, w:2 * w], reference_image(G, ws))
    edited = ws.clone()
    edited[:, 2:5] += 2 * direction
    strip = directions.edit_strip(G, ws, direction, [2], [2, 3, 4])
    assert np.array_equal(strip, reference_image(G, edited))


# ----------------------------------------------------------------------------
# edit.py: direction files.


class _ShellPayload:
    """Unpickling this runs a shell command (the classic malicious pickle)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow
def test_edit_apply_pt_and_npy_give_identical_strips(tmp_path):
    G = tiny_generator(res=32)
    pkl = save_generator(G, tmp_path / "G.pkl")
    direction = torch.randn([1, G.w_dim], generator=torch.Generator().manual_seed(1))
    torch.save(direction, tmp_path / "d.pt")
    np.save(tmp_path / "d.npy", direction[0].numpy())
    strips = []
    for name in ("d.pt", "d.npy"):
        result = run_tool("edit.py", "apply", f"--network={pkl}", f"--direction={tmp_path / name}", "--seeds=3",
                          "--strengths=-2,0,2", "--layers=middle", f"--outdir={tmp_path / name}-out", "--device=cpu")
        assert result.returncode == 0, result.stderr
        strips.append(_png(tmp_path / f"{name}-out" / "seed0003.png"))
    assert np.array_equal(strips[0], strips[1])
    ws = reference_ws(G, 3)
    ws[:, 4:8] += 2 * direction
    assert np.array_equal(strips[0][:, 2 * G.img_width:], reference_image(G, ws))


@pytest.mark.slow
def test_edit_sefa_file_round_trip(tmp_path):
    G = tiny_generator(res=32)
    pkl = save_generator(G, tmp_path / "G.pkl")
    result = run_tool("edit.py", "sefa", f"--network={pkl}", "--layers=0-3", "--num=4", f"--output={tmp_path}/s.npz")
    assert result.returncode == 0, result.stderr
    expected = directions.sefa(G, [0, 1, 2, 3], num=4)[0]
    for index in range(4):
        assert torch.equal(directions.load_direction(f"{tmp_path}/s.npz:{index}", G.w_dim), expected[index])
    with pytest.raises(Exception, match="INDEX"):
        directions.load_direction(f"{tmp_path}/s.npz", G.w_dim)


def _write_payload(path, marker):
    if path.suffix == ".npy":
        np.save(path, np.array([_ShellPayload(marker)], dtype=object), allow_pickle=True)
    elif path.name.startswith("legacy"):
        with open(path, "wb") as f:
            pickle.dump(_ShellPayload(marker), f)
    else:
        torch.save({"w": _ShellPayload(marker)}, path)


@pytest.mark.parametrize("name", ["evil.pt", "legacy-evil.pt", "evil.npy"])
def test_direction_file_with_code_is_refused(tmp_path, name):
    marker = tmp_path / "pwned"
    path = tmp_path / name
    _write_payload(path, marker)
    assert not marker.exists()
    with pytest.raises(Exception) as info:
        directions.load_direction(str(path), 16)
    assert str(path) in str(info.value) and not marker.exists()
    pkl = save_generator(tiny_generator(res=16), tmp_path / "G.pkl")
    result = run_tool("edit.py", "apply", f"--network={pkl}", f"--direction={path}", "--seeds=0",
                      f"--outdir={tmp_path}/out", "--device=cpu")
    assert result.returncode != 0 and str(path) in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()


def test_latent_file_shapes_and_refusals(tmp_path):
    G = tiny_generator(res=32)
    ws = reference_ws(G, 4)
    for name in ("a.npz", "a.npy", "a.pt"):
        space.save_latents(tmp_path / name, ws)
        loaded, noise = space.load_latents(str(tmp_path / name), G)
        assert torch.equal(loaded, ws) and noise == {}
    np.save(tmp_path / "w.npy", ws[0, 0].numpy())  # one w: broadcast to every layer
    assert torch.equal(space.load_latents(str(tmp_path / "w.npy"), G)[0], ws)
    np.save(tmp_path / "bad.npy", np.zeros([1, 3, G.w_dim], np.float32))
    with pytest.raises(Exception, match="bad.npy"):
        space.load_latents(str(tmp_path / "bad.npy"), G)
    marker = tmp_path / "pwned"
    torch.save(_ShellPayload(marker), tmp_path / "evil.pt")
    with pytest.raises(Exception, match="evil.pt"):
        space.load_latents(str(tmp_path / "evil.pt"), G)
    assert not marker.exists()


# ----------------------------------------------------------------------------
# Interpolation videos.


@pytest.mark.parametrize("kind", interpolation.KINDS)
def test_loop_visits_keyframes_and_returns(kind):
    keys = torch.randn([3, 4, 8], generator=torch.Generator().manual_seed(0))
    path = interpolation.LoopPath(keys, w_frames=50, kind=kind, w_avg=torch.randn(8))
    for k in range(3):
        assert torch.equal(path(50 * k), keys[k])
    assert torch.equal(path(150), keys[0])  # the loop closes
    mid = path(25)
    assert not torch.equal(mid, keys[0]) and not torch.equal(mid, keys[1])
    gap = (keys[1] - keys[0]).abs().max()
    assert (path(49) - keys[1]).abs().max() < 0.1 * gap and (path(1) - keys[0]).abs().max() < 0.1 * gap  # continuous


@pytest.mark.slow
def test_video_frames_size_and_first_frame(tmp_path):
    G = tiny_generator(res=32)
    pkl = save_generator(G, tmp_path / "G.pkl")
    result = run_tool("gen_video.py", f"--network={pkl}", "--seeds=7,8,9,10,11,12", "--grid=1x2",
                      "--num-keyframes=3", "--w-frames=4", "--kind=linear", f"--output={tmp_path}/v.mp4",
                      "--device=cpu")
    assert result.returncode == 0, result.stderr
    frames = video.read_video(str(tmp_path / "v.mp4"))
    assert len(frames) == 3 * 4 and frames[0].shape == (G.img_height, 2 * G.img_width, 3)
    generated = run_tool("generate.py", f"--network={pkl}", "--seeds=7,10", f"--outdir={tmp_path}/gen", "--device=cpu")
    assert generated.returncode == 0, generated.stderr
    cells = interpolation.assign_keyframes(space.seeds_to_ws(G, [7, 8, 9, 10, 11, 12]), 2, 3)
    first = next(interpolation.loop_frames(G, cells, 1, 2, w_frames=4, kind="linear"))
    for col, seed in enumerate([7, 10]):  # cell c starts at keyframe c * K
        cell = first[:, col * G.img_width:(col + 1) * G.img_width].astype(int)
        assert np.abs(cell - _png(tmp_path / "gen" / f"seed{seed:04d}.png")).max() <= 1
    assert np.abs(frames[0].astype(int) - first.astype(int)).mean() < 8  # H.264 is lossy, but not that lossy


def test_gif_fallback_keeps_frames(tmp_path):
    frames = [np.full([6, 5, 3], 40 * i, np.uint8) for i in range(4)]
    path, count = video.write_video(tmp_path / "v.gif", frames, fps=10)
    decoded = video.read_video(path)
    assert count == 4 and len(decoded) == 4 and decoded[2].shape[:2] == (6, 5)
    assert np.abs(decoded[2].astype(int) - 80).max() <= 2


@pytest.mark.slow
def test_generate_save_w_then_projected_w(tmp_path, compat_dir):
    pkl = f"{compat_dir}/tiny_64x32.pkl"
    first = run_tool("generate.py", f"--network={pkl}", "--seeds=4,42", "--trunc=0.7", "--save-w",
                     f"--outdir={tmp_path}/a", "--device=cpu")
    assert first.returncode == 0, first.stderr
    expected = np.load(os.path.join(compat_dir, "tiny_64x32_expected.npz"))
    with np.load(tmp_path / "a" / "seed0042.npz") as data:
        assert np.abs(data["w"][0] - expected["ws_psi0.7"][3]).max() < 1e-4  # the original code's ws of seed 42
    again = run_tool("generate.py", f"--network={pkl}", f"--projected-w={tmp_path}/a/seed0042.npz",
                     f"--outdir={tmp_path}/b", "--device=cpu")
    assert again.returncode == 0, again.stderr
    diff = _png(tmp_path / "b" / "proj00.png").astype(int) - _png(tmp_path / "a" / "seed0042.png")
    assert np.abs(diff).max() <= 1 and (diff != 0).mean() <= 0.001  # batch of 2 there, 1 here: rounding only


def test_video_keyframes_are_never_dropped_or_repeated_silently(capsys):
    from sg2_cli.gen_video import keyframes_per_loop
    from dnnlib.util import UserError
    assert keyframes_per_loop(12, 1, 3) == 4  # the README's 12 seeds on a 1x3 grid: 4 per loop
    with pytest.raises(UserError, match="5 keyframes do not fill the 3 loops of a 1x3 grid evenly"):
        keyframes_per_loop(5, 1, 3)  # once, seeds 3 and 4 were silently left out
    with pytest.raises(UserError, match="3 loops of 1 take 3 keyframes, but 5 were given"):
        keyframes_per_loop(5, 1, 3, num_keyframes=1)
    assert keyframes_per_loop(5, 1, 3, num_keyframes=2) == 2
    assert "Repeating the 5 keyframes in order to fill 3 loop(s) of 2" in capsys.readouterr().out
