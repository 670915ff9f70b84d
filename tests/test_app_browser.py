"""The web app (app.py) in a real browser: headless Chromium loads it on a tiny network and uses every tab.

Skipped where Chromium, chromedriver or selenium is missing (.ci/run installs Debian's chromium and
chromium-driver). The tests share one server and one page, and run in file order.

Environment: SG2_APP_TEST_NETWORK=PKL runs them on another network (e.g. a demo snapshot);
SG2_APP_SCREENSHOT=PNG also writes the screenshot there (docs/images/app.png is made so).
"""
import os
import shutil

import numpy as np
import PIL.Image
import pytest
import torch

import dnnlib
import legacy
from helpers_browser import (AppServer, click, missing_browser, open_browser, open_tab, read_pixels, set_number,
                             upload, wait_for_new_image, wait_for_text, image_src)
from helpers_latent import reference_image, reference_ws, run_tool, save_generator, tiny_generator
from latent import directions, stylespace
from metrics.stand_in_detector import save_stand_in_detector

pytestmark = [pytest.mark.slow, pytest.mark.skipif(missing_browser() is not None, reason=str(missing_browser()))]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app")
    network = os.environ.get("SG2_APP_TEST_NETWORK") or save_generator(tiny_generator(res=32), tmp / "G.pkl")
    vgg16 = save_stand_in_detector(str(tmp / "vgg16.pt"))
    server = AppServer(network, str(tmp / "app.log"), f"--vgg16={vgg16}")
    driver = None
    try:
        driver = open_browser()
        driver.get(server.url)
        G = legacy.load_network(network, device="cpu")
        yield dnnlib.EasyDict(server=server, driver=driver, network=network, tmp=tmp, G=G)
    finally:
        if driver is not None:
            driver.quit()
        server.stop()
        print(server.output())


def _generated(app, seeds):
    """{seed: pixels} written by generate.py for the app's network."""
    outdir = app.tmp / f"generated-{seeds}"
    result = run_tool("generate.py", f"--network={app.network}", f"--seeds={seeds}", f"--outdir={outdir}",
                      "--device=cpu")
    assert result.returncode == 0, result.stderr
    return {int(name[4:8]): np.array(PIL.Image.open(outdir / name)) for name in os.listdir(outdir)}


def _screenshot(app, name):
    path = app.tmp / name
    app.driver.save_screenshot(str(path))
    if os.environ.get("SG2_APP_SCREENSHOT"):
        shutil.copyfile(path, os.environ["SG2_APP_SCREENSHOT"])
    return path


def test_seed_changes_image_and_matches_generate(app):
    expected = _generated(app, "0,5")
    first = wait_for_new_image(app.driver, "sample-image")
    assert np.array_equal(read_pixels(first), expected[0])
    set_number(app.driver, "seed", 5)
    second = wait_for_new_image(app.driver, "sample-image", first)
    pixels = read_pixels(second)
    assert not np.array_equal(pixels, expected[0])
    assert np.array_equal(pixels, expected[5])
    wait_for_text(app.driver, "sample-status", "seed 5")


def test_mix_tab_returns_the_sheet(app):
    G = app.G
    open_tab(app.driver, "Mix")
    click(app.driver, "mix-button")
    sheet = read_pixels(wait_for_new_image(app.driver, "mix-image"))
    h, w = G.img_height, G.img_width
    assert sheet.shape[:2] == (4 * h, 5 * w)  # rows 1-3 and columns 10-13 plus the sources
    hand = torch.cat([reference_ws(G, 10)[:, :4], reference_ws(G, 2)[:, 4:]], dim=1)  # coarse = ws 0-3 from 10
    assert np.array_equal(sheet[2 * h:3 * h, w:2 * w], reference_image(G, hand))


def test_edit_tab_sefa_slider(app):
    G = app.G
    open_tab(app.driver, "Edit")
    start = wait_for_new_image(app.driver, "edit-image")
    assert np.array_equal(read_pixels(start), reference_image(G, reference_ws(G, 0)))  # all sliders at 0
    set_number(app.driver, "direction-0", 6)
    edited = read_pixels(wait_for_new_image(app.driver, "edit-image", start))
    direction = directions.sefa(G, list(range(G.num_ws)), 1)[0][0]
    assert np.array_equal(edited, reference_image(G, reference_ws(G, 0) + 6 * direction))
    assert _screenshot(app, "edit.png").stat().st_size > 0


def test_edit_tab_style_space_zip(app):
    import pickle
    import zipfile
    G = app.G
    channels = [conv.in_channels for _, conv in stylespace.style_layers(G)]
    vectors = {layer: np.random.RandomState(layer).randn(c).astype(np.float32) for layer, c in enumerate(channels)}
    archive = app.tmp / "upper_length.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for layer, vector in vectors.items():
            z.writestr(f"upper_length/style_vect_mean_{layer}.pkl", pickle.dumps(vector, protocol=4))
    upload(app.driver, "direction-file", archive)
    wait_for_text(app.driver, "edit-status", "upper_length.zip")  # drawn at 0 in the same response
    start = image_src(app.driver, "edit-image")
    set_number(app.driver, "direction-0", 2)
    edited = read_pixels(wait_for_new_image(app.driver, "edit-image", start))
    layers = list(range(len(channels)))
    assert np.array_equal(edited, stylespace.edit_strip(G, reference_ws(G, 0), vectors, layers, [2.0]))


def test_bad_uploads_show_a_message(app):
    wrong = app.tmp / "wrong.npy"
    np.save(wrong, np.ones([app.G.w_dim + 1], dtype=np.float32))
    upload(app.driver, "direction-file", wrong)
    wait_for_text(app.driver, "edit-status", "does not fit w_dim")
    open_tab(app.driver, "Project")
    text = app.tmp / "photo.jpg"
    text.write_text("not an image")
    upload(app.driver, "photo", text)
    wait_for_text(app.driver, "project-status", "not a readable image")


def test_project_then_edit(app):
    photo = app.tmp / "person.png"
    G = app.G
    PIL.Image.fromarray(reference_image(G, reference_ws(G, 3))).save(photo)
    upload(app.driver, "photo", photo)
    wait_for_text(app.driver, "project-status", "Ready")
    set_number(app.driver, "project-steps", 10)
    click(app.driver, "project-button")
    wait_for_text(app.driver, "project-status", "done: 10 steps")
    assert image_src(app.driver, "project-image")
    old = image_src(app.driver, "edit-image")
    click(app.driver, "edit-projection")
    assert read_pixels(wait_for_new_image(app.driver, "edit-image", old)).shape[:2] == (G.img_height, G.img_width)

