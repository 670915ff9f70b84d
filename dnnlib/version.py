"""The package's version, written once: pyproject.toml reads it, and files the tools write record it
(dnnlib.util.package_version). `dnnlib.__version__` and `sg2_cli.__version__` hand it on."""
__version__ = "0.2.2"
