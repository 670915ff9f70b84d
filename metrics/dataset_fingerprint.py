"""Which dataset a statistics file describes, in a form that survives copying it to another machine.

The fingerprint is the SHA-256 of the image files' relative names and byte sizes, in dataset order: the same
images in a folder or a zip give the same value; another version of SHHQ (other files, another count, another
resolution) gives another. Reading it costs a directory listing, not the images.
"""
import hashlib
import os

from training.dataset import ImageSource, is_image_name

_cache = dict()  # zip (path, size, mtime_ns) -> fingerprint; folders are listed each time (nested changes)


def _member_sizes(source):
    if source.kind == "zip":
        zip_file = source._get_zip()
        return [(name, zip_file.getinfo(name).file_size) for name in source.names if is_image_name(name)]
    return [(name, os.path.getsize(os.path.join(source.path, name))) for name in source.names if is_image_name(name)]


def dataset_fingerprint(path):
    """SHA-256 (hex) of the image names and sizes of the folder or zip at `path`."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns) if os.path.isfile(path) else None
    if key is None or key not in _cache:
        source = ImageSource(path)
        try:
            hasher = hashlib.sha256()
            for name, size in _member_sizes(source):
                hasher.update(f"{name}\t{size}\n".encode("utf-8"))
            digest = hasher.hexdigest()
        finally:
            source.close()
        if key is None:
            return digest
        _cache[key] = digest
    return _cache[key]
