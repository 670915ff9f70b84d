"""What a checkpoint dict holds, whatever its file format: its keys, its error type, the class each network entry
must have, and the checks of the entries that are data rather than networks (training_set_kwargs, progress, ...)."""
import dnnlib
from dnnlib.util import UserError, escape_text
from training import training_state
from training.checkpoint import plain_data

CHECKPOINT_KEYS = ("G", "D", "G_ema", "augment_pipe", "training_set_kwargs")
NETWORK_KEYS = ("G", "D", "G_ema", "augment_pipe")
# The only class names a checkpoint's plain-data entries may mention (e.g. training_set_kwargs.class_name).
DATA_CLASS_NAMES = ("training.dataset.ImageFolderDataset", "training.augment.AugmentPipe")
# The class each network entry must have: a file whose G_ema is, say, a FullyConnectedLayer is refused at load time.
ENTRY_CLASSES = {"G": "Generator", "G_ema": "Generator", "D": "Discriminator", "augment_pipe": "AugmentPipe"}


class CheckpointError(UserError):
    """A checkpoint file that cannot be read: names the file and what is wrong with it."""


def quote(text, max_len=80):
    """A name read from a file, safe to print: control characters escaped, length bounded."""
    return escape_text(text if isinstance(text, str) else repr(text), max_len)


def check_entry_class(key, class_name):
    """A network entry must be the class its key names (ENTRY_CLASSES); ValueError otherwise (the callers name the
    file). Keys of no network (a submodule built on its own) are not checked."""
    expected = ENTRY_CLASSES.get(key)
    if expected is not None and class_name != expected:
        raise ValueError(f"'{key}' is a {quote(class_name)}, not a {expected}; not a usable checkpoint (each of "
                         f"{', '.join(ENTRY_CLASSES)} must be the network its name says)")


def check_plain_entries(result, name):
    """Entries other than the networks (training_set_kwargs, progress, ...) become checked plain-data copies;
    training_set_kwargs an EasyDict, as the ecosystem's code reads it."""
    for key, value in list(result.items()):
        if key in NETWORK_KEYS:
            continue
        try:
            result[key] = plain_data.plain_copy(value, f"'{quote(key)}'", allowed_class_names=DATA_CLASS_NAMES,
                                                allow_tensors=True)
        except plain_data.PlainDataError as err:
            raise CheckpointError(f"{name}: {err}") from None
    progress = result.get("progress")
    if isinstance(progress, dict) and progress.get("version") == 1:  # This package's format (training_state.py).
        problem = training_state.progress_problem(progress)
        if problem is not None:
            raise CheckpointError(f"{name}: the progress entry (training state) is damaged: {problem}")
    if result.get("training_set_kwargs") is not None:
        result["training_set_kwargs"] = dnnlib.EasyDict(result["training_set_kwargs"])
