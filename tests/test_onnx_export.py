"""ONNX export (convert.py --to=onnx): onnxruntime draws the package's images, at any batch size."""
import os
import re

import numpy as np
import pytest
import torch

from sg2_cli import convert
from training import networks
from training.checkpoint.pickle_format import save_network_pkl
from training.checkpoint import onnx_export
from training.checkpoint.rebuild import network_tensors

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
README_MARKER = "<!-- tests/test_onnx_export.py runs this block -->"


def small_generator(c_dim, aspect, seed):
    torch.manual_seed(seed)
    G = networks.Generator(z_dim=16, c_dim=c_dim, w_dim=16, img_resolution=32, img_channels=3, aspect_ratio=aspect,
                           mapping_kwargs=dict(num_layers=2),
                           synthesis_kwargs=dict(channel_base=256, channel_max=32, num_fp16_res=2, conv_clamp=256))
    with torch.no_grad():
        for name, tensor in network_tensors(G).items():
            if not name.endswith("resample_filter"):
                tensor.add_(0.2 * torch.randn(tensor.shape))
    return G.eval()


def run_onnx(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(feeds) and session.get_outputs()[0].name == "img"
    return session.run(["img"], {name: value.numpy() for name, value in feeds.items()})[0]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{(c_dim, aspect, psi): (G, path)}: each network exported once, when a test first asks for it."""
    cache = {}

    def get(c_dim, aspect, psi):
        if (c_dim, aspect, psi) not in cache:
            G = small_generator(c_dim, aspect, seed=c_dim)
            path = tmp_path_factory.mktemp("onnx") / "g.onnx"
            assert onnx_export.export_onnx(G, path, truncation_psi=psi) == (["z", "c"] if c_dim else ["z"])
            cache[(c_dim, aspect, psi)] = G, path
        return cache[(c_dim, aspect, psi)]
    return get


@pytest.mark.slow
@pytest.mark.parametrize("c_dim, aspect, psi", [(0, (2, 1), 0.7), (3, (1, 1), 1.0)])
def test_onnxruntime_images_equal_the_package_s_at_batch_1_and_3(c_dim, aspect, psi, exported, one_torch_thread):
    G, path = exported(c_dim, aspect, psi)
    for batch in (1, 3):
        z = torch.randn([batch, 16])
        feeds = {"z": z}
        c = None
        if c_dim:
            c = torch.nn.functional.one_hot(torch.arange(batch) % c_dim, c_dim).float()
            feeds["c"] = c
        with torch.no_grad():
            expected = G(z, c, truncation_psi=psi, noise_mode="const").numpy()
        got = run_onnx(path, feeds)
        assert got.shape == expected.shape == (batch, 3, 32, 32 * aspect[1] // aspect[0])
        np.testing.assert_allclose(got, expected, atol=1e-3, rtol=0)


@pytest.mark.slow
def test_readme_example_draws_generate_s_pixels(exported, tmp_path, monkeypatch, one_torch_thread):
    import PIL.Image
    from helpers import ROOT
    from latent import space
    G, path = exported(0, (2, 1), 0.7)
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    code = re.search(r"```python\n(.*?)```", text.split(README_MARKER, 1)[1], re.S).group(1)
    assert '"shhq_512.onnx"' in code
    monkeypatch.chdir(tmp_path)
    exec(compile(code.replace('"shhq_512.onnx"', repr(str(path))), "README.md", "exec"), {})
    with torch.no_grad():
        ws = space.seeds_to_ws(G, [0], truncation_psi=0.7)
        expected = space.to_uint8(G.synthesis(ws, noise_mode="const"))[0].numpy()
    written = np.asarray(PIL.Image.open(tmp_path / "seed0000.png"))
    assert written.shape == expected.shape and np.abs(written.astype(int) - expected.astype(int)).max() <= 1


@pytest.mark.slow
def test_cli_ws_input_and_static_convolution_kernels(tmp_path, capsys, one_torch_thread):
    G = small_generator(0, (2, 1), seed=7)
    pkl = tmp_path / "g.pkl"
    save_network_pkl(pkl, {"G_ema": G})
    path = tmp_path / "synthesis.onnx"
    convert.main.main([f"--network={pkl}", f"--out={path}", "--onnx-input=ws"], standalone_mode=False)
    assert "Wrote G_ema (inputs ws -> img, opset 18) to" in capsys.readouterr().out
    ws = torch.randn([3, G.num_ws, G.w_dim])
    with torch.no_grad():
        expected = G.synthesis(ws, noise_mode="const").numpy()
    np.testing.assert_allclose(run_onnx(path, {"ws": ws}), expected, atol=1e-3, rtol=0)
    model = onnx.load(str(path))
    assert model.opset_import[0].version == onnx_export.OPSET
    convs = [node for node in model.graph.node if node.op_type in ("Conv", "ConvTranspose")]
    varying = input_dependent_values(model.graph)
    assert convs and not any(node.input[1] in varying for node in convs)  # every kernel is the same for any input


def input_dependent_values(graph):
    """Names of the values that the graph's inputs reach (its nodes are in topological order)."""
    varying = {value.name for value in graph.input}
    for node in graph.node:
        if any(name in varying for name in node.input):
            varying.update(node.output)
    return varying


def test_bad_input_kind_is_a_one_line_error(tmp_path):
    with pytest.raises(Exception, match="--onnx-input=w: expected one of z, ws"):
        onnx_export.export_onnx(small_generator(0, (1, 1), 0), tmp_path / "g.onnx", input_kind="w")
    assert not (tmp_path / "g.onnx").exists()
