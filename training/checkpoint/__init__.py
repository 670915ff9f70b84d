"""Checkpoint files: every format this package reads and writes, and the checks of what a file may ask for.

    load.py            the way in: detect_format (the one place formats are told apart), READERS, load_checkpoint
    pickle_format.py   .pkl of the StyleGAN2-ADA ecosystem: read safely (records -> networks), write atomically
    unpickler.py       the restricted unpickler: admitted globals, tensor storages, the opcode scan before it
    pickle_scan.py     replays a pickle's opcodes on placeholders: bounded size, depth and sharing
    plain_weights.py   .safetensors plus a JSON config (convert.py): read and write without pickle
    rosinality.py      rosinality/stylegan2-pytorch's .pt (g_ema, g, d, latent_avg): read and write
    rosinality_layout.py  rosinality's tensor names, shapes and scales paired with this package's
    torch_save.py      torch.save files read weights-only within the loader's bounds
    onnx_export.py     a generator as an ONNX file (export only)
    rebuild.py         a network of this package from a class name, constructor arguments and named tensors
    network_limits.py  ranges of the constructor arguments, and the allocation budget of a build
    contents.py        what a checkpoint dict holds: its keys, CheckpointError, the checks of its data entries
    plain_data.py      checked copies of plain data read from a file (training_set_kwargs, progress, ...)

A new format gets one module here with its reader (and writer), a line in load.detect_format and an entry in
load.READERS; its networks go through rebuild.py and its other entries through contents.py like any other's.
legacy.py (top level) hands the ecosystem's names on to the tools; the package's own code imports this one.
"""
