"""The web app without a browser: webapp.session against the command-line tools' references, the page's
error handling and event modes (webapp.page), and app.py's command line (tests/test_app_browser.py drives
the page itself)."""
import os
import socket
import sys

import numpy as np
import PIL.Image
import pytest
import torch

from sg2_cli import app
from dnnlib.util import UserError
from helpers_latent import reference_image, reference_ws, run_tool, save_generator, tiny_generator
from latent import directions, generation, projection, space, stylespace
from metrics.stand_in_detector import save_stand_in_detector
from training import networks
from webapp import page
from webapp.session import Session


@pytest.fixture
def session(tmp_path, one_torch_thread):
    return Session(tiny_generator(res=32), outdir=str(tmp_path / "downloads"), verbose=False,
                   vgg16_spec=save_stand_in_detector(str(tmp_path / "vgg16.pt")))


def _conditional_generator(c_dim=3):
    torch.manual_seed(1)
    G = networks.Generator(z_dim=16, c_dim=c_dim, w_dim=16, img_resolution=16, img_channels=3,
                           mapping_kwargs=dict(num_layers=2), aspect_ratio=(2, 1),
                           synthesis_kwargs=dict(channel_base=128, channel_max=16, num_fp16_res=0, conv_clamp=256))
    return G.eval().requires_grad_(False)


# ----------------------------------------------------------------------------
# Samples: the pixels generate.py writes.


@pytest.mark.parametrize("psi,noise_mode", [(1.0, "const"), (0.6, "none")])
def test_sample_is_what_generate_writes(session, psi, noise_mode):
    expected = dict(generation.generate_images(session.G, [0, 7], psi, noise_mode=noise_mode, batch_size=1))
    for seed in (0, 7):
        assert np.array_equal(session.sample(seed, psi, noise_mode)["image"], expected[seed])
    assert not np.array_equal(expected[0], expected[7])


def test_conditional_sample_uses_the_class(one_torch_thread):
    G = _conditional_generator()
    session = Session(G, verbose=False)
    images = [session.sample(4, class_idx=k)["image"] for k in range(3)]
    for k in range(3):
        assert np.array_equal(images[k], dict(generation.generate_images(G, [4], class_idx=k))[4])
    assert not np.array_equal(images[0], images[1])
    with pytest.raises(UserError, match="0-2"):
        session.sample(4, class_idx=3)


def test_ws_are_cached_per_seed_psi_and_class(session):
    ws = session.seed_ws(3, 0.7)
    assert session.seed_ws(3, 0.7) is ws
    assert torch.equal(ws, reference_ws(session.G, 3, 0.7))
    assert session.seed_ws(3, 1.0) is not ws and not torch.equal(session.seed_ws(3, 1.0), ws)


@pytest.mark.parametrize("bad", [-1, 2 ** 32, 1.5, None])
def test_bad_seed_is_a_user_error(session, bad):
    with pytest.raises(UserError, match="seed"):
        session.sample(bad)


def test_seed_grid_matches_single_samples(session):
    cells = session.seed_grid([2, 9, 4])
    assert [seed for seed, _ in cells] == [2, 9, 4]
    for seed, image in cells:
        assert np.array_equal(image, session.sample(seed)["image"])
    with pytest.raises(UserError, match="seed grid"):
        session.seed_grid(list(range(65)))


# ----------------------------------------------------------------------------
# Mixing and editing.


def test_mix_sheet_cells_are_hand_mixed_ws(session):
    G = session.G
    sheet = session.mix([1, 2], [10, 11, 12], "middle")
    h, w = G.img_height, G.img_width
    assert sheet.shape == (3 * h, 4 * w, 3)
    mixed = reference_ws(G, 2).clone()
    mixed[:, 4:8] = reference_ws(G, 11)[:, 4:8]  # middle = ws 4-7
    assert np.array_equal(sheet[2 * h:3 * h, 2 * w:3 * w], reference_image(G, mixed))
    assert np.array_equal(sheet[0:h, w:2 * w], reference_image(G, reference_ws(G, 10)))
    with pytest.raises(UserError, match="layers"):
        session.mix([1], [2], "12-13")
    with pytest.raises(UserError, match="column seeds"):
        session.mix([1], list(range(9)), "coarse")


def test_sefa_is_computed_once_per_layers(session):
    found = session.sefa("coarse", 4)
    assert session.sefa("coarse", 4) is found
    assert torch.equal(found, directions.sefa(session.G, [0, 1, 2, 3], 4)[0])
    assert not torch.equal(session.sefa("all", 4), found)


def test_edit_adds_each_direction_at_the_layers(session):
    G = session.G
    found = session.sefa("all", 3)
    ws = session.seed_ws(5)
    edited_ws, image, _ = session.edit(ws, found, [2.0, 0.0, -3.0], "middle")
    by_hand = ws.clone()
    by_hand[:, 4:8] += 2.0 * found[0] - 3.0 * found[2]  # middle = ws 4-7
    assert torch.allclose(edited_ws, by_hand, atol=1e-6)
    assert np.array_equal(image, reference_image(G, edited_ws))
    _, unchanged, _ = session.edit(ws, found, [0.0, 0.0, 0.0], "all")
    assert np.array_equal(unchanged, reference_image(G, ws))
    with pytest.raises(UserError, match="fine"):
        session.edit(ws, found, [1.0], "fine")  # a 32-pixel network has ws 0-7: no fine layers


def test_direction_files_load_safely(session, tmp_path):
    w_dim = session.G.w_dim
    rows = torch.randn([3, w_dim])
    directions.save_directions(tmp_path / "three.npz", rows)
    assert torch.equal(session.directions_file(str(tmp_path / "three.npz")), rows)
    np.save(tmp_path / "wrong.npy", np.ones([w_dim + 1], dtype=np.float32))
    with pytest.raises(UserError, match=f"does not fit w_dim={w_dim}"):
        session.directions_file(str(tmp_path / "wrong.npy"))
    torch.save({"w": os.system}, tmp_path / "code.pt")
    with pytest.raises(UserError, match="refused|not a file of plain arrays"):
        session.directions_file(str(tmp_path / "code.pt"))
    np.save(tmp_path / "none.npy", np.ones([0, w_dim], dtype=np.float32))
    with pytest.raises(UserError, match="no directions"):
        session.directions_file(str(tmp_path / "none.npy"))


def test_a_zip_of_style_vectors_edits_the_styles(session, tmp_path):
    import pickle
    import zipfile
    G = session.G
    channels = [conv.in_channels for _, conv in stylespace.style_layers(G)]
    rng = np.random.RandomState(0)
    vectors = {layer: rng.randn(c).astype(np.float32) for layer, c in enumerate(channels)}
    with zipfile.ZipFile(tmp_path / "upper_length.zip", "w") as archive:
        for layer, vector in vectors.items():
            archive.writestr(f"upper_length/style_vect_mean_{layer}.pkl", pickle.dumps(vector, protocol=4))
    loaded, layers = session.style_direction(str(tmp_path / "upper_length.zip"))
    assert layers == list(range(len(channels)))
    ws = session.seed_ws(4)
    image, _ = session.edit_styles(ws, loaded, layers, 1.5)
    assert np.array_equal(image, stylespace.edit_strip(G, ws, vectors, layers, [1.5]))
    assert not np.array_equal(image, reference_image(G, ws))
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as archive:
        archive.writestr("style_vect_mean_0.pkl", pickle.dumps(np.zeros(channels[0] + 1, np.float32)))
    with pytest.raises(UserError, match="style layer 0 .* has"):
        session.style_direction(str(tmp_path / "bad.zip"))


# ----------------------------------------------------------------------------
# Projection and downloads.


def _photo(session, tmp_path, seed=3):
    path = tmp_path / "photo.png"
    PIL.Image.fromarray(session.sample(seed)["image"]).resize((40, 70)).save(path)
    return str(path)


def test_target_fits_like_the_projector(session, tmp_path):
    path = _photo(session, tmp_path)
    G = session.G
    expected = projection.load_target(path, G.img_height, G.img_width, "crop", (0, 0, 0))
    assert np.array_equal(session.target(path, "crop", "black"), expected)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(UserError, match="not a readable image"):
        session.target(str(tmp_path / "notes.png"))


@pytest.mark.slow
def test_project_is_the_library_projection(session, tmp_path):
    target = session.target(_photo(session, tmp_path))
    steps = []
    found = session.project(target, 4, on_step=lambda done, total: steps.append((done, total)))
    expected = projection.project(session.G, target, session.vgg16(), "w", 4, seed=303)
    assert torch.equal(found["ws"], expected["ws"])
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)] and not found["stopped"]
    assert np.array_equal(found["image"], space.synthesize(session.G, expected["ws"], "const", expected["noise"])[0])


def test_project_stops_when_asked(session, tmp_path):
    target = session.target(_photo(session, tmp_path))

    def stop_at_two(done, total):
        if done == 2:
            session.stop()
    found = session.project(target, 50, "wplus", on_step=stop_at_two)
    assert found["stopped"] and found["steps"] == 2
    assert found["image"].shape == (session.G.img_height, session.G.img_width, 3)


def test_downloads_render_again_with_generate(session):
    sample = session.sample(6, 0.8)
    png, npz = session.export("seed0006", sample["image"], sample["ws"])
    assert np.array_equal(np.array(PIL.Image.open(png)), sample["image"])
    assert np.array_equal(generation.render_projected(session.G, npz)[0], sample["image"])


# ----------------------------------------------------------------------------
# The app module: optional gradio, messages in the page, the command line.


def test_missing_gradio_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)
    with pytest.raises(UserError, match=r"pip install \.\[app\]"):
        page.import_gradio()
    with pytest.raises(UserError, match=r"pip install \.\[app\]"):
        page.check_gradio()


def test_callback_errors_become_a_message():
    status = object()

    @page.guarded(status)
    def fails_for_the_user():
        raise UserError("photo.jpg: not a readable image")

    @page.guarded(status)
    def breaks():
        raise RuntimeError("boom")

    assert fails_for_the_user() == {status: "**Error:** photo\\.jpg: not a readable image"}
    assert "RuntimeError: boom" in breaks()[status]


def test_callback_errors_are_one_log_line_in_the_terminal(capsys, monkeypatch):
    status = object()

    @page.guarded(status)
    def upload(name):
        raise UserError(f"{name}: not a readable image")

    @page.guarded(status)
    def breaks():
        raise RuntimeError("boom")

    monkeypatch.delenv("SG2_VERBOSE", raising=False)
    upload("photo\x1b[31m.jpg")
    breaks()
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["app: upload: photo\\x1b[31m.jpg: not a readable image", "app: breaks failed: RuntimeError: boom"]
    monkeypatch.setenv("SG2_VERBOSE", "1")  # the traceback of an unexpected error only when asked for
    breaks()
    err = capsys.readouterr().err
    assert err.startswith("app: breaks failed: RuntimeError: boom\n") and "Traceback" in err


def test_loopback_hosts():
    assert app.is_loopback("127.0.0.1") and app.is_loopback("localhost") and app.is_loopback("::1")
    assert not app.is_loopback("0.0.0.0") and not app.is_loopback("192.168.1.5") and not app.is_loopback("example.org")


@pytest.mark.slow
def test_slider_work_made_stale_is_dropped(session):
    """Direction sliders and settings run in gradio's always_last mode: while an image is being made, newer
    values replace the waiting one, so no stale value is ever rendered."""
    pytest.importorskip("gradio")
    demo = page.build_app(session)
    ids = {block.elem_id: block_id for block_id, block in demo.blocks.items() if getattr(block, "elem_id", None)}
    watched = {ids["direction-0"], ids["psi"], ids["seed"]}
    modes = [fn.trigger_mode for fn in demo.fns.values() if any(target in watched for target, _ in fn.targets)]
    assert modes and set(modes) == {"always_last"}


@pytest.mark.slow
def test_bad_checkpoint_is_one_line_and_a_warning_for_open_hosts(tmp_path):
    result = run_tool("app.py", f"--network={tmp_path}/missing.pkl", "--host=0.0.0.0")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"Error: {tmp_path}/missing.pkl: no such file"]
    assert "warning: the app will be reachable from other machines on 0.0.0.0" in result.stdout
    (tmp_path / "bad.pkl").write_bytes(b"not a pickle")
    result = run_tool("app.py", f"--network={tmp_path / 'bad.pkl'}")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "warning" not in result.stdout


@pytest.mark.slow
def test_port_in_use_is_one_line(tmp_path):
    pytest.importorskip("gradio")
    network = save_generator(tiny_generator(res=32), tmp_path / "G.pkl")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_tool("app.py", f"--network={network}", f"--port={port}", "--device=cpu")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: --host/--port: cannot serve on 127.0.0.1:{port} ("), lines
