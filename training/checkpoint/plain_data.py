"""Plain data read from a file (dicts, lists, numbers, strings, tensors): checked and copied before use.

Dicts stored in checkpoints (`training_set_kwargs`, `progress`, ...) are data, never instructions:
`plain_copy` admits only plain types, bounds their size and nesting (every shared reference is
counted again, so a small file cannot expand into a huge structure), accepts a `class_name` only
from an allow-list of this package's own classes, and returns an unshared copy.
"""
from collections import OrderedDict

import numpy as np
import torch

from dnnlib.util import EasyDict, escape_text

MAX_ITEMS = 1_000_000   # Values visited in one structure, shared ones counted each time.
MAX_DEPTH = 32
MAX_STR = 1 << 16
MAX_INT = 1 << 64


class PlainDataError(ValueError):
    """Data of a type, size or class name that is not admitted; the message says where."""


class _Copier:
    def __init__(self, allowed_class_names, allow_tensors, max_items):
        self.allowed_class_names = tuple(allowed_class_names)
        self.allow_tensors = allow_tensors
        self.max_items = max_items
        self.visited = 0

    def copy(self, value, where, depth):
        self.visited += 1
        if self.visited > self.max_items:
            raise PlainDataError(f"{where}: more than {self.max_items} values (shared references counted each time)")
        if depth > MAX_DEPTH:
            raise PlainDataError(f"{where}: nested more than {MAX_DEPTH} deep")
        if value is None or isinstance(value, (bool, float)):
            return value
        if isinstance(value, int):
            if abs(value) >= MAX_INT:
                raise PlainDataError(f"{where}: the integer has more than 64 bits")
            return value
        if isinstance(value, str):
            if len(value) > MAX_STR:
                raise PlainDataError(f"{where}: a string of {len(value)} characters (at most {MAX_STR})")
            return value
        if isinstance(value, np.generic) and value.dtype.kind in "biuf":
            return self.copy(value.item(), where, depth)
        if isinstance(value, dict):
            return self.copy_dict(value, where, depth)
        if isinstance(value, (list, tuple)):
            return type(value)(self.copy(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value))
        if isinstance(value, (set, frozenset)):
            return type(value)(self.copy(item, where, depth + 1) for item in value)
        if self.allow_tensors and isinstance(value, torch.Tensor):
            return value
        raise PlainDataError(f"{where}: a {escape_text(type(value).__name__, 60)} is not plain data")

    def copy_dict(self, value, where, depth):
        out = EasyDict() if isinstance(value, EasyDict) else OrderedDict() if isinstance(value, OrderedDict) else {}
        for key, item in value.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise PlainDataError(f"{where}: a key of type {type(key).__name__} (only names and integers)")
            key = self.copy(key, where, depth + 1)
            out[key] = self.copy(item, f"{where}.{escape_text(str(key), 60)}", depth + 1)
        class_name = out.get("class_name")
        if "class_name" in out and class_name not in self.allowed_class_names:
            shown = escape_text(class_name, 80) if isinstance(class_name, str) else type(class_name).__name__
            raise PlainDataError(f"{where}: class_name '{shown}' is not one of this package's classes "
                                 f"({', '.join(self.allowed_class_names) or 'none allowed here'}); refused")
        return out


def plain_copy(value, where, allowed_class_names=(), allow_tensors=False, max_items=MAX_ITEMS):
    """An unshared copy of `value` built from plain types only; PlainDataError (naming `where`) otherwise.

    numpy scalars become Python numbers; EasyDict and OrderedDict keep their type; tensors are
    kept as they are when `allow_tensors`; any dict's `class_name` must be in `allowed_class_names`.
    """
    return _Copier(allowed_class_names, allow_tensors, max_items).copy(value, where, 0)
