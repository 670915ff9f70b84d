"""Reading a checkpoint, whatever its format: the one way in for the tools, training and metrics (legacy.py
hands the same functions to the ecosystem's scripts under their usual names).

`detect_format` is the one place that tells the formats apart; READERS names each format's reader, which
returns the checkpoint dict with its networks rebuilt and its other entries checked (contents.py).
"""
from dnnlib.util import escape_text, open_url
from training.checkpoint import pickle_format
from training.checkpoint import plain_weights
from training.checkpoint import rosinality
from training.checkpoint import torch_save
from training.checkpoint.contents import CheckpointError

READERS = {  # format -> read_checkpoint(f, name, force_fp16, allow_code)
    "pickle": pickle_format.read_checkpoint,          # .pkl of the StyleGAN2-ADA ecosystem
    "safetensors": plain_weights.read_checkpoint,     # plain weights written by convert.py
    "rosinality": rosinality.read_checkpoint,         # .pt/.pth of rosinality/stylegan2-pytorch (torch.save)
}


def detect_format(f):
    """The format of an open binary file, from its first bytes (the position is left unchanged): 'safetensors',
    'rosinality' (a torch.save file), else 'pickle', whose reader refuses anything that is not a network pickle."""
    if plain_weights.is_safetensors(f):
        return "safetensors"
    if torch_save.is_torch_save(f):
        return "rosinality"
    return "pickle"


def load_network_pkl(f, force_fp16=False, allow_code=False):
    """Read a checkpoint from an open binary file: dict with G, D, G_ema, augment_pipe, training_set_kwargs.

    Any format of READERS (.pkl, .safetensors, rosinality's .pt) is recognised by its first bytes; none runs code
    from the file unless `allow_code` lets a trusted pickle do so. Keys the file lacks come back as None; other
    keys of the file (e.g. training progress) are kept.
    """
    name = escape_text(str(getattr(f, "name", "<checkpoint stream>")))
    return READERS[detect_format(f)](f, name, force_fp16=force_fp16, allow_code=allow_code)


def load_checkpoint(url_or_path, sha256=None, verbose=True, **kwargs):
    """Open a path or URL (.pkl, .safetensors or .pt; `sha256` checked first) and return the whole checkpoint dict
    (load_network_pkl's: G, D, G_ema, augment_pipe, training_set_kwargs, and any other keys of the file)."""
    with open_url(url_or_path, sha256=sha256, verbose=verbose) as f:
        return load_network_pkl(f, **kwargs)


def load_network(url_or_path, key="G_ema", device=None, sha256=None, **kwargs):
    """Open a path or URL (.pkl, .safetensors or .pt; `sha256` checked first) and return one network from the
    checkpoint (default G_ema), ready to run. For the whole dict, see load_checkpoint."""
    return network_of(load_checkpoint(url_or_path, sha256=sha256, **kwargs), key, url_or_path, device)


def network_of(checkpoint, key, source, device=None):
    """One network of a loaded checkpoint dict, ready to run; a missing one is an error naming `source`."""
    net = checkpoint[key]
    if net is None:
        raise CheckpointError(f"{source}: the checkpoint holds no '{key}'")
    net = net.eval().requires_grad_(False)
    return net.to(device) if device is not None else net
