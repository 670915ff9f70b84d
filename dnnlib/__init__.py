"""Small general-purpose helpers shared by the whole package (the `dnnlib` namespace of the ecosystem)."""
from . import download, util  # noqa: F401
from .util import EasyDict, UserError, make_cache_dir_path  # noqa: F401
