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
MAX_HEADER_BYTES = 100 << 20  # the safetensors library's own limit on its JSON header (recognising a file)
# What this package's files need, with a wide margin (a 1024x512 G, D, G_ema and augment_pipe: 450 tensors, 45 KB
# of header), checked before the header is parsed: a hostile header cannot make the parser build millions of objects.
MAX_READ_HEADER_BYTES = 4 << 20
MAX_TENSORS = 10_000
MAX_HEADER_CONTAINERS = 3 * MAX_TENSORS + 10_000  # '{' and '[' bytes: three per tensor entry, some in the config
TENSOR_DTYPE = "F32"          # the only dtype plain weights hold: export_safetensors writes float32 tensors


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


def _read_header(f):
    """The safetensors JSON header (the position is left unchanged), bounded before it is parsed: its size, the
    containers in it, the number of tensors it lists and their dtype (float32 only)."""
    position = f.tell()
    header_len = int.from_bytes(f.read(8), "little")
    if header_len > MAX_READ_HEADER_BYTES:
        raise PlainWeightsError(f"its header is {header_len} bytes, more than the {MAX_READ_HEADER_BYTES >> 20} MB "
                                "plain weights of this package need (about 100 bytes a tensor)")
    text = f.read(header_len)
    f.seek(position)
    containers = text.count(b"{") + text.count(b"[")
    if containers > MAX_HEADER_CONTAINERS:
        raise PlainWeightsError(f"its header holds {containers} JSON objects and lists, more than plain weights of "
                                f"at most {MAX_TENSORS} tensors need")
    header = json.loads(text.decode("utf-8"))
    if not isinstance(header, dict):
        raise PlainWeightsError("its header is not a JSON object")
    entries = {name: entry for name, entry in header.items() if name != "__metadata__"}
    if len(entries) > MAX_TENSORS:
        raise PlainWeightsError(f"it lists {len(entries)} tensors, more than {MAX_TENSORS}")
    for name, entry in entries.items():
        dtype = entry.get("dtype") if isinstance(entry, dict) else None
        if dtype != TENSOR_DTYPE:
            raise PlainWeightsError(f"tensor '{printable(name, 80)}' is {printable(str(dtype), 20)}; plain weights hold "
                                    f"float32 ({TENSOR_DTYPE}) tensors only, as convert.py writes them")
    return header


def _read_config(f):
    """The JSON config from the safetensors header, checked for shape (its meaning is checked on rebuilding)."""
    header = _read_header(f)
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
    """{key: {tensor name: tensor}}; a tensor under no listed network, or one with NaN or Inf, is an error."""
    groups = {key: {} for key in keys}
    for full_name, tensor in tensors.items():
        key, _, tensor_name = full_name.partition(".")
        if key not in groups or not tensor_name:
            raise PlainWeightsError(f"tensor '{full_name}' belongs to no network in the config")
        if not bool(tensor.isfinite().all()):
            raise PlainWeightsError(f"tensor '{full_name}' holds NaN or infinite values; the weights are damaged")
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
