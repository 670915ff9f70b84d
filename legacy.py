"""Reading and writing network checkpoints of the StyleGAN2-ADA ecosystem, safely.

This module keeps the names that the ecosystem's scripts and notebooks call (`legacy.load_network_pkl(f,
force_fp16=False)`, `legacy.save_network_pkl`, ...); the work is done in training/checkpoint/, which holds
every format (.pkl, .safetensors, rosinality's .pt) and every check of what a file may ask for. The package's own code imports
that package directly.

`load_network_pkl` reads a .pkl with a restricted unpickler that admits only the few globals such a file
legitimately names, never runs the embedded module source, and rebuilds this package's own classes from each
object's `class_name` and constructor arguments; tensors are then loaded by name, strictly. Pass
`allow_code=True` to unpickle a file you trust with the full pickle machinery (which executes its embedded
code), e.g. a network class this package does not know. A .safetensors file (convert.py) is read without
any unpickling, a rosinality .pt weights-only. `convert` is StyleGAN-Human's name for writing a generator in
rosinality's format.
"""
from training.checkpoint.contents import CHECKPOINT_KEYS, DATA_CLASS_NAMES, NETWORK_KEYS, CheckpointError
from training.checkpoint.load import load_checkpoint, load_network, load_network_pkl, network_of
from training.checkpoint.pickle_format import save_network_pkl
from training.checkpoint.rebuild import load_tensors_strict, rebuild_network
from training.checkpoint.rosinality import export_rosinality

__all__ = ["CHECKPOINT_KEYS", "DATA_CLASS_NAMES", "NETWORK_KEYS", "CheckpointError", "load_checkpoint",
           "load_network", "load_network_pkl", "load_tensors_strict", "network_of", "rebuild_network",
           "save_network_pkl", "convert"]


def convert(network_pkl, output_file):
    """StyleGAN-Human's legacy.convert: the G_ema of a checkpoint (path or URL) written in rosinality's format,
    {'g_ema': state dict, 'latent_avg': w_avg}, whatever its channel table (as that function writes it)."""
    export_rosinality({"G_ema": load_network(network_pkl)}, output_file, custom_channels=True)
