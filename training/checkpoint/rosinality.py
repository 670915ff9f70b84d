"""rosinality/stylegan2-pytorch's checkpoint format (.pt), read and written: the dict its train.py saves.

    {"g_ema": Generator state dict, "g": ..., "d": Discriminator state dict, "latent_avg": w_avg [w_dim]}

This is what the encoders of the ecosystem load (e4e, pSp, ReStyle, HyperStyle, StyleGAN-Human's PTI), and
what StyleGAN-Human's `legacy.convert` writes for a generator (`g_ema` and `latent_avg`). Tensors are laid out
as rosinality_layout.py describes.

Reading: the file is read weights-only within the loader's bounds (torch_save.py). Each network's architecture
is inferred from its tensors (size and aspect from the constant input, channels per resolution, mapping depth,
style dimension), built as this package's network (rebuild.py: argument ranges, allocation budget, strict
loading) and run in float32 without clamping, as rosinality's code runs. `w_avg` comes from `latent_avg`, or
else is the mean w of 10,000 seeded z (rosinality's `mean_latent`, made repeatable).

Writing: a network that rosinality's classes cannot express is a one-line error saying why (a conditional
network, another architecture or activation, a channel table its Generator cannot build, ...). Optimizer
states are not written (rosinality's train.py --ckpt also reads `g_optim` and `d_optim`).
"""
import collections
import io
import math
import os

import torch

import dnnlib
from training import networks
from training.checkpoint import torch_save
from training.checkpoint.contents import CHECKPOINT_KEYS, CheckpointError, check_plain_entries
from training.checkpoint.rebuild import build_network, load_tensors_strict, network_tensors
from training.checkpoint.rosinality_layout import (
    LR_MLP, MBSTD_GROUP, LayoutError, canonical_filter, channel_options, count_consecutive, discriminator_table,
    from_rosinality, generator_table, rosinality_channel_multiplier, shape_of, to_rosinality)

W_AVG_SAMPLES = 10_000  # z samples for w_avg when a file has no latent_avg
KEYS = {"G_ema": "g_ema", "G": "g", "D": "d"}  # this package's checkpoint keys -> rosinality's


# ----------------------------------------------------------------------------
# Writing: what rosinality's classes can express.


def _generator_problem(G, custom_channels):
    """Why rosinality's Generator cannot hold G (None if it can)."""
    if not isinstance(G, networks.Generator):
        return f"a {type(G).__name__}, not this package's Generator"
    if G.c_dim != 0:
        return f"a conditional generator (c_dim={G.c_dim}); rosinality's Generator has no class input"
    if G.img_channels != 3 or G.z_dim != G.w_dim:
        return (f"img_channels={G.img_channels}, z_dim={G.z_dim}, w_dim={G.w_dim}; rosinality's Generator makes RGB "
                "images from one style_dim for z and w")
    fcs = [getattr(G.mapping, f"fc{idx}") for idx in range(G.mapping.num_layers)]
    if any(fc.activation != "lrelu" or fc.bias_gain != LR_MLP or tuple(fc.weight.shape) != (G.w_dim, G.w_dim)
           for fc in fcs):
        return f"a mapping network other than rosinality's (w_dim x w_dim layers, lrelu, lr multiplier {LR_MLP})"
    blocks = [getattr(G.synthesis, f"b{res}") for res in G.synthesis.block_resolutions]
    if any(block.architecture != "skip" for block in blocks):
        return f"the '{blocks[0].architecture}' synthesis architecture; rosinality's Generator is the 'skip' one"
    layers = [layer for block in blocks for layer in (getattr(block, "conv0", None), block.conv1) if layer]
    if any(not layer.use_noise or layer.activation != "lrelu" or layer.weight.shape[-1] != 3 for layer in layers):
        return "convolutions other than rosinality's (3x3, lrelu, with noise inputs)"
    return _shape_problem(G, {res: getattr(G.synthesis, f"b{res}").conv1.out_channels
                              for res in G.synthesis.block_resolutions}, custom_channels)


def _discriminator_problem(D, custom_channels):
    """Why rosinality's Discriminator cannot hold D (None if it can)."""
    if not isinstance(D, networks.Discriminator):
        return f"a {type(D).__name__}, not this package's Discriminator"
    if D.c_dim != 0:
        return f"a conditional discriminator (c_dim={D.c_dim}); rosinality's Discriminator has no class input"
    blocks = [getattr(D, f"b{res}") for res in D.block_resolutions]
    if D.img_channels != 3 or any(block.architecture != "resnet" for block in blocks + [D.b4]):
        return (f"the '{D.b4.architecture}' architecture with {D.img_channels} image channels; rosinality's "
                "Discriminator is the 'resnet' one for RGB images")
    mbstd = D.b4.mbstd
    if mbstd is None or mbstd.group_size != MBSTD_GROUP or mbstd.num_channels != 1:
        group = None if mbstd is None else mbstd.group_size
        return f"minibatch stddev group {group}; rosinality's Discriminator uses groups of {MBSTD_GROUP}, 1 feature"
    convs = [layer for block in blocks for layer in (block.conv0, block.conv1)] + [D.b4.conv, blocks[0].fromrgb]
    if any(layer.activation != "lrelu" for layer in convs) or D.b4.fc.activation != "lrelu":
        return "activations other than lrelu"
    channels = {res: block.conv0.out_channels for res, block in zip(D.block_resolutions, blocks)}
    channels[4] = D.b4.in_channels
    return _shape_problem(D, channels, custom_channels)


def _shape_problem(net, channels, custom_channels):
    # Aspect ratio, resample filters and channel table, shared by G and D.
    if tuple(net.aspect_ratio) not in ((1, 1), (2, 1)):
        ratio = ":".join(map(str, net.aspect_ratio))
        return (f"aspect ratio {ratio} (H:W); the rosinality format holds square networks and StyleGAN-Human's 2:1 "
                "ones")
    canonical = canonical_filter()
    if any(name.endswith("resample_filter") and not torch.equal(t.cpu(), canonical)
           for name, t in net.named_buffers()):
        return "a resample filter other than [1, 3, 3, 1]"
    if not custom_channels and rosinality_channel_multiplier(channels) is None:
        table = ", ".join(f"{res}: {c}" for res, c in sorted(channels.items()))
        return (f"channels per resolution {{{table}}}, which rosinality's classes build for no channel_multiplier "
                "(512 up to 32, then 256m at 64, 128m at 128, ...); --custom-channels writes them anyway")
    return None


def network_state(net, key, custom_channels=False):
    """The rosinality state dict of one network (G, G_ema or D); LayoutError saying why when it cannot be."""
    is_d = key == "D"
    problem = (_discriminator_problem if is_d else _generator_problem)(net, custom_channels)
    if problem is not None:
        raise LayoutError(f"{key} cannot be written in rosinality's format: it has {problem}")
    table = discriminator_table(net.img_resolution) if is_d else \
        generator_table(net.mapping.num_layers, net.img_resolution)
    tensors = network_tensors(net)
    return collections.OrderedDict((ros, to_rosinality(kind, tensors[nv].detach().to("cpu", copy=True)))
                                   for ros, nv, kind in table)


def rosinality_dict(data, custom_channels=False):
    """The dict rosinality's train.py writes, from a checkpoint dict: g_ema, g, d (those present), latent_avg."""
    result = {}
    for key, ros_key in KEYS.items():
        if data.get(key) is not None:
            result[ros_key] = network_state(data[key], key, custom_channels)
    if not result:
        raise LayoutError("the checkpoint holds none of G_ema, G, D; nothing to write")
    source = data.get("G_ema") if data.get("G_ema") is not None else data.get("G")
    if source is not None and hasattr(source.mapping, "w_avg"):
        result["latent_avg"] = source.mapping.w_avg.detach().to("cpu", copy=True)
    return result


def export_rosinality(data, out_path, custom_channels=False):
    """Write a checkpoint dict (as load_network_pkl returns it) in rosinality's format, atomically; returns the
    rosinality keys written. A network the format cannot express is a UserError."""
    try:
        result = rosinality_dict(data, custom_channels)
    except LayoutError as err:
        raise dnnlib.util.UserError(str(err)) from None
    buffer = io.BytesIO()
    torch.save(result, buffer)
    dnnlib.util.atomic_write(os.fspath(out_path), lambda f: f.write(buffer.getvalue()))
    return list(result)


def channel_multiplier_of(data):
    """rosinality's channel_multiplier for the generator of a checkpoint dict (None: no rosinality table)."""
    G = data.get("G_ema") if data.get("G_ema") is not None else data.get("G")
    if G is None:
        return None
    return rosinality_channel_multiplier({res: getattr(G.synthesis, f"b{res}").conv1.out_channels
                                          for res in G.synthesis.block_resolutions})


# ----------------------------------------------------------------------------
# Reading: architecture from the tensors.


def _aspect_kwargs(height, width):
    # 2:1 as StyleGAN-Human's square=False, so the network also loads in that code base once saved as .pkl.
    ratio = (height // math.gcd(height, width), width // math.gcd(height, width))
    if ratio == (1, 1):
        return {}
    return {"square": False} if ratio == (2, 1) else {"aspect_ratio": list(ratio)}


def infer_generator(state, what):
    """This package's Generator arguments for a rosinality Generator state dict."""
    num_mapping = count_consecutive(state, r"style\.(\d+)\.weight", 1)
    w_dim, z_dim = shape_of(state, "style.1.weight", what)
    const = shape_of(state, "input.input", what)
    if len(const) != 4 or const[0] != 1 or max(const[2:]) != 4 or min(const[2:]) < 1:
        raise LayoutError(f"{what}: constant input of shape {list(const)}; expected [1, C, 4, 4] or [1, C, 4, 2]")
    levels = count_consecutive(state, r"to_rgbs\.(\d+)\.conv\.weight", 0)
    channels = {4: const[1]}
    for level in range(levels):
        channels[8 << level] = shape_of(state, f"convs.{2 * level}.conv.weight", what)[1]
    channel_base, channel_max = channel_options(channels, what)
    img_channels = shape_of(state, "to_rgb1.conv.weight", what)[1]
    return dict(z_dim=z_dim, c_dim=0, w_dim=w_dim, img_resolution=4 << levels, img_channels=img_channels,
                mapping_kwargs=dict(num_layers=num_mapping),
                synthesis_kwargs=dict(channel_base=channel_base, channel_max=channel_max, num_fp16_res=0,
                                      conv_clamp=None),
                **_aspect_kwargs(const[2], const[3]))


def infer_discriminator(state, what, generator_kwargs=None):
    """This package's Discriminator arguments for a rosinality Discriminator state dict; the aspect ratio comes
    from the generator when there is one (C * 4 * 2 features fit 4x2 and 2x4), else portrait (StyleGAN-Human's)."""
    num_blocks = count_consecutive(state, r"convs\.(\d+)\.conv1\.0\.weight", 1)
    img_resolution = 4 << num_blocks
    channels = {img_resolution: shape_of(state, "convs.0.0.weight", what)[0]}
    for idx in range(1, num_blocks + 1):
        channels[img_resolution >> idx] = shape_of(state, f"convs.{idx}.conv2.1.weight", what)[0]
    channel_base, channel_max = channel_options(channels, what)
    cells = shape_of(state, "final_linear.0.weight", what)[1] // max(channels[4], 1)
    aspect = {16: {}, 8: {"square": False}, 4: {"aspect_ratio": [4, 1]}}.get(cells)
    if generator_kwargs is not None:
        aspect = {key: generator_kwargs[key] for key in ("square", "aspect_ratio") if key in generator_kwargs}
    if aspect is None:
        raise LayoutError(f"{what}: final_linear.0 reads {cells} features per channel; expected 16 (4x4) or 8 (4x2)")
    return dict(c_dim=0, img_resolution=img_resolution, img_channels=shape_of(state, "convs.0.0.weight", what)[1],
                architecture="resnet", channel_base=channel_base, channel_max=channel_max, num_fp16_res=0,
                conv_clamp=None, epilogue_kwargs=dict(mbstd_group_size=MBSTD_GROUP), **aspect)


def _network_tensors_from(state, table, expected, what):
    """This package's tensors ({name: tensor}) from a rosinality state dict, each checked against the shape the
    inferred network expects; the filters that rosinality does not store are [1, 3, 3, 1]."""
    names = {ros for ros, _, _ in table}
    unexpected = sorted(set(state) - names)
    if unexpected:
        raise LayoutError(f"{what} has tensor(s) that rosinality's classes do not: {', '.join(unexpected[:3])}")
    canonical = canonical_filter()
    tensors = {name: canonical.clone() for name in expected if name.endswith("resample_filter")}
    for ros, nv, kind in table:
        want = tuple(to_rosinality(kind, torch.empty(expected[nv].shape, device="meta")).shape)
        if shape_of(state, ros, what) != want:
            raise LayoutError(f"{what} tensor '{ros}' has shape {list(state[ros].shape)}, expected {list(want)}")
        tensor = from_rosinality(kind, state[ros].detach().float(), expected[nv].shape)
        if nv.endswith("resample_filter"):  # checked, then the filter this package computes (bit for bit)
            if not torch.allclose(tensor, canonical, rtol=1e-6, atol=0):
                raise LayoutError(f"{what} tensor '{ros}' is not the [1, 3, 3, 1] blur kernel this package implements")
            tensor = canonical.clone()
        tensors[nv] = tensor
    return tensors


def _build(class_name, kwargs, state, table, key, force_fp16, w_avg=None):
    # Built first (checked, within the budget of the file's tensors), so that each rosinality tensor is checked
    # against the shape this network expects and named in the error.
    net = build_network(class_name, [], kwargs, state, key, force_fp16)
    expected = network_tensors(net)
    tensors = _network_tensors_from(state, table, expected, f"'{KEYS[key]}'")
    if "mapping.w_avg" in expected:
        tensors["mapping.w_avg"] = expected["mapping.w_avg"].detach().clone() if w_avg is None else w_avg
    load_tensors_strict(net, tensors, key)
    net.eval()
    if "mapping.w_avg" in expected and w_avg is None:
        net.mapping.w_avg.copy_(estimate_w_avg(net))
    return net


@torch.no_grad()
def estimate_w_avg(G, num_samples=W_AVG_SAMPLES, seed=0):
    """The mean w of `num_samples` z drawn from a seeded generator (for files without latent_avg)."""
    z = torch.randn([num_samples, G.z_dim], generator=torch.Generator().manual_seed(seed))
    return torch.cat([G.mapping(chunk, None)[:, 0] for chunk in z.split(1000)]).mean(dim=0)


def _w_avg_from(latent_avg, w_dim):
    # [w_dim], [1, w_dim], or one identical row per ws (as some encoders store it).
    if latent_avg is None:
        return None
    rows = latent_avg.detach().float()
    rows = rows.reshape(-1, rows.shape[-1]) if rows.ndim >= 1 else rows
    if rows.ndim != 2 or rows.shape[1] != w_dim or not torch.equal(rows, rows[:1].expand_as(rows)):
        raise LayoutError(f"'latent_avg' of shape {list(latent_avg.shape)} is not one w of {w_dim} features")
    return rows[0].clone()


def _state_dicts(data):
    """{rosinality key: state dict} of a loaded file; a bare Generator state dict counts as g_ema, and so does
    the decoder of an encoder's checkpoint (e4e, pSp: 'state_dict' with 'decoder.*' keys)."""
    if not isinstance(data, dict):
        raise LayoutError(f"it holds a {type(data).__name__}, not a dict of state dicts")
    if "input.input" in data and "style.1.weight" in data:
        return {"g_ema": data}
    encoder_state = data.get("state_dict")
    if isinstance(encoder_state, dict) and not any(key in data for key in KEYS.values()):
        decoder = {key[len("decoder."):]: value for key, value in encoder_state.items()
                   if isinstance(key, str) and key.startswith("decoder.")}
        if decoder:
            data = {"g_ema": decoder}
    states = {key: data[key] for key in KEYS.values() if key in data}
    if not states:
        raise LayoutError(f"it holds none of g_ema, g, d (keys: {', '.join(sorted(map(str, data))[:8])})")
    for key, state in states.items():
        if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                  for k, v in state.items()):
            raise LayoutError(f"'{key}' is not a state dict (names to tensors)")
    return states


def networks_from_rosinality(data, force_fp16=False):
    """The checkpoint dict (G, D, G_ema, augment_pipe, training_set_kwargs) of a loaded rosinality file."""
    states = _state_dicts(data)
    latent_avg = data.get("latent_avg") if "latent_avg" in data else None
    if latent_avg is not None and not isinstance(latent_avg, torch.Tensor):
        raise LayoutError(f"'latent_avg' is a {type(latent_avg).__name__}, not a tensor")
    result = {key: None for key in CHECKPOINT_KEYS}
    g_kwargs = None
    for key in ("G_ema", "G"):
        state = states.get(KEYS[key])
        if state is not None:
            g_kwargs = infer_generator(state, f"'{KEYS[key]}'")
            table = generator_table(g_kwargs["mapping_kwargs"]["num_layers"], g_kwargs["img_resolution"])
            w_avg = _w_avg_from(latent_avg, g_kwargs["w_dim"])
            result[key] = _build("Generator", g_kwargs, state, table, key, force_fp16, w_avg)
    if "d" in states:
        d_kwargs = infer_discriminator(states["d"], "'d'", g_kwargs)
        result["D"] = _build("Discriminator", d_kwargs, states["d"], discriminator_table(d_kwargs["img_resolution"]),
                             "D", force_fp16)
    return result


def read_checkpoint(f, name, force_fp16=False, allow_code=False):
    """The checkpoint dict of an open rosinality-format file (`name` as error messages show it; `allow_code`
    means nothing here: the file is read weights-only)."""
    data = torch_save.load_torch_file(f, name)
    try:
        result = networks_from_rosinality(data, force_fp16)
    except ValueError as err:  # LayoutError, and rebuild's errors
        raise CheckpointError(f"{name}: {err}") from None
    check_plain_entries(result, name)
    return result
