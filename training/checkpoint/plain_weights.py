"""Plain weights: network checkpoints as safetensors (tensors) plus a JSON config, loadable without pickle.

A file holds, for each network of the checkpoint that is present (G_ema, G, D, augment_pipe), its
tensors under '<key>.<tensor name>' (e.g. 'G_ema.mapping.fc0.weight', the names of state_dict()),
and one metadata entry, 'stylegan2', a JSON object:

    {"format": "stylegan2-plain-weights", "format_version": 1, "package_version": "0.1.0",
     "networks": {"G_ema": {"class_name": "Generator", "init_args": [], "init_kwargs": {...},
                            "training": false}, ...},
     "training_set_kwargs": {...} or null}

This module reads and writes the file; load.detect_format recognises one by its first bytes, and each
network is rebuilt with the checks that pickles get (rebuild.py): the class must be one of this package's
(looked up, never imported by name), the constructor arguments must build, and every tensor must match
by name and shape. Training state (optimizers, counters) is not part of plain weights. Write one with
`python convert.py --network=X.pkl --out=X.safetensors`.
"""
import json
import os

import numpy as np
import safetensors.torch

import dnnlib
from dnnlib.download import printable
from torch_utils import persistence
from training.checkpoint.contents import CHECKPOINT_KEYS, NETWORK_KEYS, CheckpointError, check_plain_entries
from training.checkpoint.rebuild import network_tensors, rebuild_network

FORMAT = "stylegan2-plain-weights"
FORMAT_VERSION = 1
METADATA_KEY = "stylegan2"
MAX_HEADER_BYTES = 100 << 20  # the safetensors library's own limit on its JSON header


class PlainWeightsError(ValueError):
    """A malformed plain-weights file (the message names the problem; the loader adds the file name)."""


# ----------------------------------------------------------------------------
# Writing.

def _json_value(value, where):
    """A constructor argument as plain JSON (tuples become lists); anything that is not data is refused."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_json_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise dnnlib.util.UserError(f"{where}: has non-string keys, which plain weights cannot store")
        return {k: _json_value(v, f"{where}.{k}") for k, v in value.items()}
    raise dnnlib.util.UserError(f"{where}: a {type(value).__name__} value, which plain weights cannot store")


def network_config(net, key):
    """class_name, init_args, init_kwargs and training mode of one network, as JSON-ready data."""
    class_name = type(net).__name__
    if not persistence.is_persistent(net) or not type(net).__module__.startswith("training."):
        raise dnnlib.util.UserError(f"'{key}' is a {class_name}, not one of this package's network classes; "
                                    "only those can be exported as plain weights")
    return dict(class_name=class_name, init_args=_json_value(net.init_args, f"{key}.init_args"),
                init_kwargs=_json_value(net.init_kwargs, f"{key}.init_kwargs"), training=bool(net.training))


def export_safetensors(data, out_path):
    """Write the networks of a checkpoint dict (as load_network_pkl returns it) to `out_path`; returns their keys."""
    config = dict(format=FORMAT, format_version=FORMAT_VERSION, package_version=dnnlib.util.package_version(),
                  networks={}, training_set_kwargs=None)
    tensors = {}
    for key in NETWORK_KEYS:
        net = data.get(key)
        if net is None:
            continue
        config["networks"][key] = network_config(net, key)
        for name, tensor in network_tensors(net).items():
            # Own contiguous copies: safetensors refuses tensors that share memory.
            tensors[f"{key}.{name}"] = tensor.detach().to("cpu", copy=True).contiguous()
    if not config["networks"]:
        raise dnnlib.util.UserError(f"the checkpoint holds none of {', '.join(NETWORK_KEYS)}; nothing to export")
    if data.get("training_set_kwargs") is not None:
        config["training_set_kwargs"] = _json_value(dict(data["training_set_kwargs"]), "training_set_kwargs")
    blob = safetensors.torch.save(tensors, metadata={METADATA_KEY: json.dumps(config, sort_keys=True)})
    dnnlib.util.atomic_write(os.fspath(out_path), lambda f: f.write(blob))
    return list(config["networks"])


# ----------------------------------------------------------------------------
# Reading.

def is_safetensors(f):
    """Whether a seekable binary file starts like safetensors (an 8-byte header length, then '{'); the
    position is left unchanged. Pickles start with 0x80 and can never match."""
    if not (hasattr(f, "seekable") and f.seekable()):
        return False
    position = f.tell()
    head = f.read(9)
    f.seek(position)
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return 2 <= header_len <= MAX_HEADER_BYTES and head[8:9] == b"{"


def _read_config(f):
    """The JSON config from the safetensors header, checked for shape (its meaning is checked on rebuilding)."""
    position = f.tell()
    header_len = int.from_bytes(f.read(8), "little")
    header = json.loads(f.read(header_len).decode("utf-8"))
    f.seek(position)
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or METADATA_KEY not in metadata:
        raise PlainWeightsError(f"a safetensors file without this package's '{METADATA_KEY}' config; write plain "
                         "weights with convert.py")
    config = json.loads(metadata[METADATA_KEY])
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise PlainWeightsError(f"the '{METADATA_KEY}' config is not {FORMAT}")
    version = config.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise PlainWeightsError(f"format_version {version!r} is not supported (this package reads up to "
                         f"{FORMAT_VERSION}); update the package")
    networks = config.get("networks")
    if not isinstance(networks, dict) or not networks or not set(networks) <= set(NETWORK_KEYS):
        raise PlainWeightsError(f"'networks' must name some of {', '.join(NETWORK_KEYS)}")
    for key, spec in networks.items():
        valid = isinstance(spec, dict) and isinstance(spec.get("class_name"), str) and \
            isinstance(spec.get("init_args", []), list) and isinstance(spec.get("init_kwargs", {}), dict) and \
            isinstance(spec.get("training", False), bool)
        if not valid:
            raise PlainWeightsError(f"network '{key}' needs class_name (string), init_args (list), init_kwargs (object) "
                             "and training (bool)")
    if not isinstance(config.get("training_set_kwargs"), (dict, type(None))):
        raise PlainWeightsError("'training_set_kwargs' must be an object or null")
    return config


def _read_tensors(f):
    path = getattr(f, "name", None)
    if isinstance(path, str) and os.path.isfile(path):
        return safetensors.torch.load_file(path)  # memory-mapped, not read twice
    return safetensors.torch.load(f.read())


def _split_by_network(tensors, keys):
    """{key: {tensor name: tensor}}; a tensor under no listed network is an error."""
    groups = {key: {} for key in keys}
    for full_name, tensor in tensors.items():
        key, _, tensor_name = full_name.partition(".")
        if key not in groups or not tensor_name:
            raise PlainWeightsError(f"tensor '{full_name}' belongs to no network in the config")
        groups[key][tensor_name] = tensor
    return groups


def read_plain_weights(f):
    """(config, {network key: {tensor name: tensor}}) from an open safetensors file; no pickle is involved.
    Anything malformed raises PlainWeightsError (read_checkpoint adds the file name)."""
    try:
        config = _read_config(f)
        tensors = _read_tensors(f)
    except PlainWeightsError:
        raise
    except Exception as err:  # JSON, UTF-8, and the safetensors library's own error type for damaged files
        raise PlainWeightsError(f"not a readable safetensors file ({type(err).__name__}: {printable(str(err))})") from None
    return config, _split_by_network(tensors, config["networks"])


def read_checkpoint(f, name, force_fp16=False, allow_code=False):
    """The checkpoint dict of an open safetensors file, with the checks of a pickle, without unpickling (`name` is
    the file as error messages show it; `allow_code` means nothing here: plain weights hold no code)."""
    try:
        config, tensors = read_plain_weights(f)
        result = {key: None for key in CHECKPOINT_KEYS}
        for key, spec in config["networks"].items():
            result[key] = rebuild_network(spec["class_name"], spec.get("init_args", []), spec.get("init_kwargs", {}),
                                          tensors[key], key, force_fp16, training=spec.get("training", False))
    except ValueError as err:
        raise CheckpointError(f"{name}: {err}") from None
    if config.get("training_set_kwargs") is not None:
        result["training_set_kwargs"] = config["training_set_kwargs"]
    check_plain_entries(result, name)
    return result
