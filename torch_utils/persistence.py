"""Persistent classes: network objects that pickle together with the source of their defining module.

A pickled persistent object is a call of `_reconstruct_persistent_obj(meta)` with
meta = {type: 'class', version: 6, module_src, class_name, state}. This is the checkpoint format of
the StyleGAN2-ADA ecosystem. Unpickling such a file with plain `pickle` runs this module's
`_reconstruct_persistent_obj`, which executes `module_src` unless it is the source of a module of
this package; that is the trusting path, for files the user vouches for. `legacy.load_network_pkl`
never comes here: it reads checkpoints with a restricted unpickler and rebuilds our own classes.
"""
import copy
import inspect
import sys
import types
import uuid

_VERSION = 6
_decorators = set()        # every persistent class made by `persistent_class`
_import_hooks = []         # functions applied to `meta` before an object is rebuilt
_src_to_module = dict()    # module source text -> module object, so each source is loaded once


def persistent_class(orig_class):
    """Class decorator: instances remember their constructor arguments and pickle with their module's source."""
    assert isinstance(orig_class, type)
    if is_persistent(orig_class):
        return orig_class
    module = sys.modules[orig_class.__module__]
    class_name = orig_class.__name__

    class Decorator(orig_class):
        _orig_module_src = None
        _orig_class_name = class_name

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # Stored in __dict__ (not as properties) so they travel in `state`, as the format requires.
            self._init_args = copy.deepcopy(args)
            self._init_kwargs = copy.deepcopy(kwargs)

        @property
        def init_args(self):
            return copy.deepcopy(self._init_args)

        @property
        def init_kwargs(self):
            return copy.deepcopy(self._init_kwargs)

        def __reduce__(self):
            fields = list(super().__reduce__())
            fields += [None] * max(3 - len(fields), 0)
            if fields[0] is not _reconstruct_persistent_obj:
                meta = dict(type="class", version=_VERSION, module_src=_module_source(module),
                            class_name=class_name, state=fields[2])
                fields[0] = _reconstruct_persistent_obj
                fields[1] = (meta,)
                fields[2] = None
            return tuple(fields)

    Decorator.__name__ = class_name
    Decorator.__qualname__ = class_name
    Decorator.__module__ = orig_class.__module__
    Decorator.__doc__ = orig_class.__doc__
    _decorators.add(Decorator)
    return Decorator


def is_persistent(obj) -> bool:
    """True for a persistent class or an instance of one."""
    try:
        if obj in _decorators:
            return True
    except TypeError:
        pass
    return type(obj) in _decorators


def import_hook(hook):
    """Register `hook(meta) -> meta`, applied to every persistent object rebuilt by this module."""
    assert callable(hook)
    _import_hooks.append(hook)


_module_src_cache = dict()  # module name -> its source text (read once; deepcopy pickles often)


def _module_source(module) -> str:
    if module.__name__ not in _module_src_cache:
        _module_src_cache[module.__name__] = inspect.getsource(module)
    return _module_src_cache[module.__name__]


def _reconstruct_persistent_obj(meta):
    """Rebuild a persistent object from its pickled meta (the trusting path: may execute module_src)."""
    meta = dict(meta)
    meta["state"] = dict(meta["state"])
    for hook in _import_hooks:
        meta = hook(meta)
        assert meta is not None
    if meta.get("version") != _VERSION or meta.get("type") != "class":
        raise ValueError(f"unsupported persistent object: type={meta.get('type')!r} version={meta.get('version')!r}")
    module = _module_for_source(meta["module_src"])
    orig_class = getattr(module, meta["class_name"])
    decorator_class = persistent_class(orig_class)
    obj = decorator_class.__new__(decorator_class)
    setstate = getattr(obj, "__setstate__", None)
    if callable(setstate):
        setstate(meta["state"])
    else:
        obj.__dict__.update(meta["state"])
    return obj


def _module_for_source(module_src: str):
    # Our own modules' source maps straight to the loaded module; only foreign source is executed.
    if module_src not in _src_to_module:
        for decorator in _decorators:
            own = sys.modules[decorator.__module__]
            try:
                if _module_source(own) == module_src:
                    _src_to_module[module_src] = own
                    break
            except (OSError, TypeError):
                continue
    if module_src not in _src_to_module:
        module_name = "_imported_module_" + uuid.uuid4().hex
        module = types.ModuleType(module_name)
        sys.modules[module_name] = module
        exec(module_src, module.__dict__)  # noqa: S102 - trusting path, documented above
        _src_to_module[module_src] = module
    return _src_to_module[module_src]
