"""Walking a pickle's opcodes before anything is built, to refuse structures that are costly to build or use.

The unpickler itself is a small stack machine that never recurses, but what it builds can still
be a trap: a 1 KB pickle can make a dict key out of tuples shared 60 levels deep (hashing it
takes 2**60 steps), nest containers thousands deep (RecursionError in any later walk), or ask for
a memo slot at index 2**32 (a huge allocation). `scan` replays the opcodes on placeholder nodes
(nothing is built or called) and refuses such a file in time proportional to its size:

  - every global must be admitted by the caller's `classify` function (the same allow-list as
    the unpickler's), and each call is checked for what the restricted unpickler supports;
  - dict keys and set members must be plain scalars, so hashing is cheap;
  - containers hold at most `max_items` entries, memo indices stay below the opcode count;
  - the finished object graph has no cycles, is at most `max_depth` deep, and expands to at
    most `max_expanded` nodes when every shared (memoized) reference is counted each time.
"""
import pickletools
from typing import Callable, NamedTuple, Optional

from dnnlib.util import escape_text


class PickleScanError(ValueError):
    """A pickle whose structure was refused; the message says why (without naming the file)."""


class ScanSummary(NamedTuple):
    """What a scan found in a pickle it admitted (the tests check it against the pickle's real contents)."""
    opcodes: int    # Opcodes replayed, PROTO and STOP included.
    depth: int      # Nesting of the finished object; a scalar is 1, a list of scalars 2.
    expanded: int   # Nodes of the finished object, each shared (memoized) reference counted every time it is used.


class Limits(NamedTuple):
    max_ops: int = 20_000_000        # Opcodes in one pickle.
    max_items: int = 1_000_000       # Entries of one list, tuple, dict or set.
    max_depth: int = 100             # Nesting of containers and calls in the finished object.
    max_expanded: int = 20_000_000   # Nodes of the object with every shared reference counted again.


# Roles a global can play (what `classify(module, name)` returns; None = not admitted).
CALL = "call"            # An opaque function call: the result is an object we do not look into.
DICT = "dict"            # A dict type (OrderedDict, EasyDict): only called without arguments.
SET = "set"              # set / frozenset: called with one list or tuple of scalars.
STATEFUL = "stateful"    # An object that accepts BUILD with a tuple of scalars as state (numpy dtype).
RECORD = "record"        # A persistent-object reconstructor: called with one meta dict.

_ATOM, _LIST, _TUPLE, _DICT, _SET, _GLOBAL, _OBJECT = range(7)
_ATOM_OPS = {
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING", "BINSTRING", "SHORT_BINSTRING",
    "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "NONE", "NEWTRUE", "NEWFALSE", "UNICODE",
    "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "FLOAT", "BINFLOAT"}
_IGNORED_OPS = {"PROTO", "FRAME"}


class _Node:
    __slots__ = ("kind", "role", "value", "children")

    def __init__(self, kind, value=None, role=None):
        self.kind = kind
        self.value = value        # str atoms: the text (for STACK_GLOBAL); globals: "module.name"
        self.role = role
        self.children = [] if kind != _ATOM else None


_SCALAR = _Node(_ATOM)


def _describe(node):
    if node.kind == _GLOBAL or (node.kind == _OBJECT and node.value):
        return node.value
    return {_ATOM: "a scalar", _LIST: "a list", _TUPLE: "a tuple", _DICT: "a dict", _SET: "a set",
            _OBJECT: "an object"}.get(node.kind, "an object")


class _Machine:
    """The unpickler's stack machine over placeholder nodes."""

    def __init__(self, classify, limits, allow_persistent_ids):
        self.classify = classify
        self.limits = limits
        self.allow_persistent_ids = allow_persistent_ids
        self.stack = []
        self.marks = []
        self.memo = {}
        self.num_ops = 0
        self.result = None

    # Stack primitives, with the real unpickler's underflow checks.
    def push(self, node):
        self.stack.append(node)

    def pop(self):
        fence = self.marks[-1] if self.marks else 0
        if len(self.stack) <= fence:
            raise PickleScanError("malformed pickle (stack underflow)")
        return self.stack.pop()

    def top(self):
        fence = self.marks[-1] if self.marks else 0
        if len(self.stack) <= fence:
            raise PickleScanError("malformed pickle (stack underflow)")
        return self.stack[-1]

    def pop_mark(self):
        if not self.marks:
            raise PickleScanError("malformed pickle (no MARK)")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def add_children(self, node, items):
        node.children.extend(items)
        if len(node.children) > 2 * self.limits.max_items:
            raise PickleScanError(f"a container holds more than {self.limits.max_items} entries")

    @staticmethod
    def require_scalars(items, what):
        for item in items:
            if item.kind != _ATOM:
                raise PickleScanError(f"{what} is {_describe(item)}, not a plain scalar (refused: hashing nested "
                                      "values can take unbounded time)")

    # Opcodes.
    def step(self, name, arg):
        self.num_ops += 1
        if self.num_ops > self.limits.max_ops:
            raise PickleScanError(f"more than {self.limits.max_ops} pickle opcodes")
        if name in _ATOM_OPS:
            # Only short strings are kept (STACK_GLOBAL reads names from the stack); other scalars share one node.
            self.stack.append(_Node(_ATOM, value=arg) if isinstance(arg, str) and len(arg) <= 1000 else _SCALAR)
        elif name not in _IGNORED_OPS:
            handler = _HANDLERS.get(name)
            if handler is None:
                raise PickleScanError(f"uses the pickle opcode {name}, which a network checkpoint never needs")
            handler(self, arg)

    def op_mark(self, _arg):
        self.marks.append(len(self.stack))

    def op_stop(self, _arg):
        self.result = self.pop()

    def op_pop(self, _arg):
        fence = self.marks[-1] if self.marks else 0
        if len(self.stack) > fence:
            self.stack.pop()
        else:
            self.pop_mark()

    def op_pop_mark(self, _arg):
        self.pop_mark()

    def op_dup(self, _arg):
        self.push(self.top())

    def op_put(self, arg):
        self.memo_put(arg)

    def op_memoize(self, _arg):
        self.memo_put(len(self.memo))

    def memo_put(self, index):
        if not isinstance(index, int) or index < 0 or index > self.num_ops:
            raise PickleScanError(f"memo index {index!r} out of range")
        self.memo[index] = self.top()

    def op_get(self, arg):
        if arg not in self.memo:
            raise PickleScanError(f"memo index {arg!r} is used before it is set")
        self.push(self.memo[arg])

    def op_empty(self, kind):
        self.push(_Node(kind))

    def op_tuple(self, _arg):
        node = _Node(_TUPLE)
        self.add_children(node, self.pop_mark())
        self.push(node)

    def op_tuple_n(self, count):
        items = [self.pop() for _ in range(count)][::-1]
        node = _Node(_TUPLE)
        node.children = items
        self.push(node)

    def op_list(self, _arg):
        node = _Node(_LIST)
        self.add_children(node, self.pop_mark())
        self.push(node)

    def op_dict(self, _arg):
        node = _Node(_DICT)
        self.set_items(node, self.pop_mark())
        self.push(node)

    def op_append(self, _arg):
        item = self.pop()
        self.append_to(self.top(), [item])

    def op_appends(self, _arg):
        items = self.pop_mark()
        self.append_to(self.top(), items)

    def append_to(self, target, items):
        if target.kind != _LIST:
            raise PickleScanError(f"appends to {_describe(target)}, not a list")
        self.add_children(target, items)

    def op_setitem(self, _arg):
        value = self.pop()
        key = self.pop()
        self.set_items(self.top(), [key, value])

    def op_setitems(self, _arg):
        items = self.pop_mark()
        self.set_items(self.top(), items)

    def set_items(self, target, items):
        if target.kind != _DICT:
            raise PickleScanError(f"sets items of {_describe(target)}, not a dict")
        if len(items) % 2:
            raise PickleScanError("malformed pickle (odd number of dict items)")
        self.require_scalars(items[0::2], "a dict key")
        self.add_children(target, items)

    def op_additems(self, _arg):
        items = self.pop_mark()
        target = self.top()
        if target.kind != _SET:
            raise PickleScanError(f"adds set items to {_describe(target)}, not a set")
        self.require_scalars(items, "a set member")
        self.add_children(target, items)

    def op_frozenset(self, _arg):
        items = self.pop_mark()
        self.require_scalars(items, "a set member")
        node = _Node(_SET)
        self.add_children(node, items)
        self.push(node)

    # Globals and calls.
    def global_node(self, module, name):
        qualified = f"{module}.{name}"
        role = self.classify(module, name)
        if role is None:
            raise PickleScanError(f"it names the global '{escape_text(qualified, 120)}', which does not belong "
                                  "in a network checkpoint (refused without running it)")
        return _Node(_GLOBAL, value=qualified, role=role)

    def op_global(self, arg):
        module, _, name = str(arg).partition(" ")
        self.push(self.global_node(module, name))

    def op_stack_global(self, _arg):
        name, module = self.pop(), self.pop()
        if not (isinstance(module.value, str) and isinstance(name.value, str)):
            raise PickleScanError("malformed pickle (STACK_GLOBAL without names)")
        self.push(self.global_node(module.value, name.value))

    def op_reduce(self, _arg):
        args = self.pop()
        func = self.pop()
        if args.kind != _TUPLE:
            raise PickleScanError("malformed pickle (REDUCE without an argument tuple)")
        self.push(self.call(func, args.children, "REDUCE"))

    def op_newobj(self, _arg):
        args = self.pop()
        cls = self.pop()
        self.push(self.new_object(cls, args, None))

    def op_newobj_ex(self, _arg):
        kwargs = self.pop()
        args = self.pop()
        cls = self.pop()
        self.push(self.new_object(cls, args, kwargs))

    def new_object(self, cls, args, kwargs):
        # cls.__new__(cls, ...) skips the constructor: admitted only for empty dict types.
        if cls.kind != _GLOBAL or cls.role != DICT or args.kind != _TUPLE or args.children or \
                (kwargs is not None and (kwargs.kind != _DICT or kwargs.children)):
            raise PickleScanError(f"creates {_describe(cls)} with NEWOBJ, which a network checkpoint never does")
        return _Node(_DICT)

    def op_obj(self, _arg):
        items = self.pop_mark()
        if not items:
            raise PickleScanError("malformed pickle (OBJ without a class)")
        self.push(self.call(items[0], items[1:], "OBJ"))

    def op_inst(self, arg):
        module, _, name = str(arg).partition(" ")
        args = self.pop_mark()
        self.push(self.call(self.global_node(module, name), args, "INST"))

    def call(self, func, args, opcode):
        if func.kind != _GLOBAL:
            raise PickleScanError(f"calls {_describe(func)} with {opcode}, not an admitted global")
        if func.role == DICT:
            if args:
                raise PickleScanError(f"calls {func.value} with arguments")
            return _Node(_DICT)
        if func.role == SET:
            if len(args) > 1 or (args and args[0].kind not in (_LIST, _TUPLE)):
                raise PickleScanError(f"calls {func.value} with something other than one list")
            members = args[0].children if args else []
            self.require_scalars(members, "a set member")
            node = _Node(_SET)
            self.add_children(node, members)
            return node
        if func.role == RECORD and (len(args) != 1 or args[0].kind != _DICT):
            raise PickleScanError(f"calls {func.value} without one meta dict")
        node = _Node(_OBJECT, value=func.value, role=func.role)
        self.add_children(node, list(args))
        return node

    def op_build(self, _arg):
        state = self.pop()
        target = self.top()
        if target.kind == _DICT and state.kind == _DICT:
            self.require_scalars(state.children[0::2], "an attribute name")
        elif target.kind == _OBJECT and target.role == STATEFUL and state.kind == _TUPLE:
            self.require_scalars(state.children, "a state entry")
        else:
            raise PickleScanError(f"sets the state of {_describe(target)} with BUILD, which a network checkpoint "
                                  "never does")
        self.add_children(target, [state])

    def op_persid(self, _arg):
        if not self.allow_persistent_ids:
            raise PickleScanError("uses persistent ids, which a network checkpoint never does")
        if _arg is None:  # BINPERSID takes its id from the stack.
            self.pop()
        self.push(_Node(_OBJECT, value="persistent id"))


def _op_empty_of(kind):
    return lambda machine, _arg: machine.op_empty(kind)


def _op_tuple_of(count):
    return lambda machine, _arg: machine.op_tuple_n(count)


_HANDLERS = {
    "MARK": _Machine.op_mark, "STOP": _Machine.op_stop, "POP": _Machine.op_pop, "POP_MARK": _Machine.op_pop_mark,
    "DUP": _Machine.op_dup, "PUT": _Machine.op_put, "BINPUT": _Machine.op_put, "LONG_BINPUT": _Machine.op_put,
    "MEMOIZE": _Machine.op_memoize, "GET": _Machine.op_get, "BINGET": _Machine.op_get,
    "LONG_BINGET": _Machine.op_get, "EMPTY_LIST": _op_empty_of(_LIST), "EMPTY_TUPLE": _op_empty_of(_TUPLE),
    "EMPTY_DICT": _op_empty_of(_DICT), "EMPTY_SET": _op_empty_of(_SET), "TUPLE": _Machine.op_tuple,
    "TUPLE1": _op_tuple_of(1), "TUPLE2": _op_tuple_of(2), "TUPLE3": _op_tuple_of(3), "LIST": _Machine.op_list,
    "DICT": _Machine.op_dict, "APPEND": _Machine.op_append, "APPENDS": _Machine.op_appends,
    "SETITEM": _Machine.op_setitem, "SETITEMS": _Machine.op_setitems, "ADDITEMS": _Machine.op_additems,
    "FROZENSET": _Machine.op_frozenset, "GLOBAL": _Machine.op_global, "STACK_GLOBAL": _Machine.op_stack_global,
    "REDUCE": _Machine.op_reduce, "NEWOBJ": _Machine.op_newobj, "NEWOBJ_EX": _Machine.op_newobj_ex,
    "OBJ": _Machine.op_obj, "INST": _Machine.op_inst, "BUILD": _Machine.op_build,
    "PERSID": _Machine.op_persid, "BINPERSID": _Machine.op_persid,
}


def _check_graph(root, limits):
    """No cycles; depth and expanded size (shared references counted each time) within the limits. Returns the
    root's (depth, expanded size)."""
    cap = limits.max_expanded + 1
    done = {}  # id(node) -> (depth, expanded size)
    on_path = set()
    work = [(root, False)]
    while work:
        node, children_done = work.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            depth, size = 1, 1
            for child in node.children:
                child_depth, child_size = done[id(child)]
                depth, size = max(depth, child_depth + 1), min(size + child_size, cap)
            if depth > limits.max_depth:
                raise PickleScanError(f"objects nested more than {limits.max_depth} deep")
            if size > limits.max_expanded:
                raise PickleScanError(f"shared references expand to more than {limits.max_expanded} objects "
                                      "(refused: using it would take unbounded time or memory)")
            done[key] = (depth, size)
            continue
        if key in done:
            continue
        if key in on_path:
            raise PickleScanError("an object contains itself (a reference cycle)")
        if node.kind == _ATOM:
            done[key] = (1, 1)
            continue
        on_path.add(key)
        work.append((node, True))
        for child in node.children:
            if id(child) not in done:
                work.append((child, False))
    return done[id(root)]


class _BoundedReader:
    """A file view for pickletools: reads never ask for more than the bytes that are left."""

    def __init__(self, f, size):
        self.f = f
        self.left = size
        self.pos = 0

    def read(self, n=-1):
        if n is None or n < 0 or n > self.left:
            n = self.left
        data = self.f.read(n)
        self.left -= len(data)
        self.pos += len(data)
        return data

    def readline(self):
        line = self.f.readline(max(self.left, 0))
        self.left -= len(line)
        self.pos += len(line)
        return line

    def tell(self):
        return self.pos


def scan(f, size: int, classify: Callable[[str, str], Optional[str]], limits: Limits = Limits(),
         allow_persistent_ids: bool = False) -> ScanSummary:
    """Replay one pickle from the binary file `f` (at most `size` bytes; `f` is left after STOP).

    Raises PickleScanError saying what is refused; 'truncated' in the message when the data ends early.
    Returns the ScanSummary of an admitted pickle.
    """
    machine = _Machine(classify, limits, allow_persistent_ids)
    reader = _BoundedReader(f, size)
    try:
        for opcode, arg, _pos in pickletools.genops(reader):
            machine.step(opcode.name, arg)
    except PickleScanError:
        raise
    except (ValueError, UnicodeDecodeError, OverflowError) as err:  # What pickletools raises on bad data.
        if reader.left <= 0:
            raise PickleScanError("truncated (unexpected end of data)") from None
        raise PickleScanError(f"not a pickle ({err})") from None
    if machine.result is None:
        raise PickleScanError("truncated (unexpected end of data)")
    depth, expanded = _check_graph(machine.result, limits)
    return ScanSummary(machine.num_ops, depth, expanded)
