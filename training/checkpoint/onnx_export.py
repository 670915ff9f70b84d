"""ONNX export of a generator (convert.py --to=onnx): a file that onnxruntime runs without PyTorch or custom ops.

    inputs:  z [N, z_dim] (and c [N, c_dim] for a conditional network), or ws [N, num_ws, w_dim]
    output:  img [N, 3, H, W] in the package's scale (about -1 to 1), for any batch size N

The graph is traced by torch.export (torch.onnx.export with dynamo=True) on the CPU, where bias_act and
upfirdn2d take their reference paths (plain PyTorch ops). The modulated convolutions run in their "unfused"
form, selected explicitly: the activations are scaled by the styles around one shared weight, and the
demodulation coefficients scale the output. Every convolution kernel is then a constant of the graph; the fused
form builds a kernel per sample at run time, which the exporters cannot express as ONNX convolutions. Noise is
the network's constant noise (noise_mode='const'); truncation psi is baked in.

onnx, onnxruntime and onnxscript (which torch's exporter uses) are the optional extra `.[onnx]`.
"""
import copy
import inspect
import os

import torch

import dnnlib

OPSET = 18  # the ONNX opset written (onnxruntime 1.14 and later run it)
INPUTS = ("z", "ws")


class ExportedGenerator(torch.nn.Module):
    """G as the exported graph computes it: z (and c) or ws in, img out; const noise, unfused modulation."""

    def __init__(self, G, truncation_psi=1.0, input_kind="z"):
        super().__init__()
        self.G = G
        self.truncation_psi = float(truncation_psi)
        self.input_kind = input_kind

    def synthesis(self, ws):
        return self.G.synthesis(ws, noise_mode="const", fused_modconv=False, channels_last=False, force_fp32=True)

    def forward(self, x, c=None):
        # x: ws [N, num_ws, w_dim] or z [N, z_dim]; c: [N, c_dim] for conditional networks.
        if self.input_kind == "ws":
            return self.synthesis(x)
        return self.synthesis(self.G.mapping(x, c, truncation_psi=self.truncation_psi))


def example_inputs(G, input_kind, batch_size=2):
    """(names, tensors) of the graph's inputs for a batch."""
    if input_kind == "ws":
        return ["ws"], (torch.randn([batch_size, G.num_ws, G.w_dim]),)
    if G.c_dim:
        c = torch.nn.functional.one_hot(torch.arange(batch_size) % G.c_dim, G.c_dim).float()
        return ["z", "c"], (torch.randn([batch_size, G.z_dim]), c)
    return ["z"], (torch.randn([batch_size, G.z_dim]),)


def export_onnx(G, out_path, truncation_psi=1.0, input_kind="z"):
    """Write G (a Generator of this package) as an ONNX file, atomically; returns the input names."""
    if input_kind not in INPUTS:
        raise dnnlib.util.UserError(f"--onnx-input={input_kind}: expected one of {', '.join(INPUTS)}")
    try:
        import onnx  # noqa: F401  (the optional extra; torch's exporter needs onnx and onnxscript)
        import onnxscript  # noqa: F401
    except ImportError:
        raise dnnlib.util.UserError("--to=onnx needs the onnx extra: pip install .[onnx]") from None
    if "dynamo" not in inspect.signature(torch.onnx.export).parameters:
        raise dnnlib.util.UserError(f"--to=onnx: torch {torch.__version__} has no torch.export-based ONNX exporter "
                                    "(torch.onnx.export(dynamo=True)); update torch")
    G = copy.deepcopy(G).to("cpu", torch.float32).eval().requires_grad_(False)
    model = ExportedGenerator(G, truncation_psi, input_kind).eval()
    names, inputs = example_inputs(G, input_kind)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(model, inputs, dynamo=True, opset_version=OPSET, input_names=names,
                                output_names=["img"], dynamic_shapes=tuple({0: batch} for _ in inputs),
                                verbose=False)
    blob = program.model_proto.SerializeToString()
    dnnlib.util.atomic_write(os.fspath(out_path), lambda f: f.write(blob))
    return names
