"""The import graph of the package, read from the code (imports inside functions included): no cycle between files,
arrows that point down the layers of docs/ARCHITECTURE.md, no library module importing a top-level script, and
legacy.py a thin facade."""
import ast
import os
import textwrap

import pytest

from helpers import ROOT

# Library packages, lowest first: a module may import its own layer (without cycles) and the layers below.
LAYERS = ("dnnlib", "torch_utils", "training", "metrics", "latent", "webapp")
SCRIPTS = "top-level scripts"  # legacy.py, generate.py, train.py, ...: above every library package
NOT_THE_PACKAGE = ("tests", "benchmarks", "scripts", "docs", "build")
LEGACY_MAX_LINES = 150


def package_files(root):
    """{dotted module name: path} of the package's Python files (not tests, benchmarks or scripts)."""
    files = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in NOT_THE_PACKAGE)
        for name in names:
            if name.endswith(".py"):
                path = os.path.relpath(os.path.join(folder, name), root)
                module = path[:-3].replace(os.sep, ".").removesuffix(".__init__")
                files[module] = path
    return files


def _imported_names(node, package):
    """The dotted names an Import/ImportFrom node names (relative imports resolved against `package`)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(parts + ([base] if base else []))
    return [f"{base}.{alias.name}" for alias in node.names]


def _owning_module(name, files):
    """The longest prefix of a dotted name that is one of the package's modules (None for other packages)."""
    while name and name not in files:
        name = name.rpartition(".")[0]
    return name or None


def is_face(path):
    """A package __init__ that only hands names on (docstring and imports): an import of it is no arrow."""
    if not path.endswith("__init__.py"):
        return False
    with open(path) as f:
        body = ast.parse(f.read()).body
    return all(isinstance(node, (ast.Import, ast.ImportFrom)) or
               (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) for node in body)


def import_graph(root):
    """{module: {imported module: [(line, inside a function?)]}} over package_files(root)."""
    files = package_files(root)
    graph = {}
    for module, path in files.items():
        with open(os.path.join(root, path)) as f:
            tree = ast.parse(f.read(), path)
        package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
        in_function = {id(node) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                       for node in ast.walk(fn)}
        edges = graph.setdefault(module, {})
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for name in _imported_names(node, package):
                target = _owning_module(name, files)
                if target is None or target == module or is_face(os.path.join(root, files[target])):
                    continue
                edges.setdefault(target, []).append((node.lineno, id(node) in in_function))
    return graph


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer_of(module):
    top = module.split(".")[0]
    return LAYERS.index(top) if top in LAYERS else len(LAYERS)


def layer_name(module):
    return LAYERS[layer_of(module)] if layer_of(module) < len(LAYERS) else SCRIPTS


@pytest.fixture(scope="module")
def graph():
    return import_graph(ROOT)


def test_the_graph_builder_sees_every_kind_of_import(tmp_path):
    # A hand-made tree whose arrows are known: relative, from-package and in-function imports, a re-exporting
    # __init__ (no arrow), another package (no arrow), and a cycle that only an in-function import closes.
    sources = {
        "pkg/__init__.py": '"""Hands names on."""\nfrom .a import f  # noqa\n',
        "pkg/a.py": "import os\nfrom . import b\n\n\ndef f():\n    from pkg.c import g\n    return g\n",
        "pkg/b.py": "import pkg\n",
        "pkg/c.py": "def g():\n    import pkg.a\n    return pkg.a\n",
        "tool.py": "from pkg import a\n",
        "tests/test_x.py": "import tool\n",
    }
    for path, text in sources.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(textwrap.dedent(text))
    found = import_graph(str(tmp_path))
    assert found == {"pkg": {"pkg.a": [(2, False)]}, "pkg.a": {"pkg.b": [(2, False)], "pkg.c": [(6, True)]},
                     "pkg.b": {}, "pkg.c": {"pkg.a": [(2, True)]}, "tool": {"pkg.a": [(1, False)]}}
    assert cycles(found) == [["pkg.a", "pkg.c"]]


def test_no_cycle_between_files(graph):
    assert cycles(graph) == []


def test_library_never_imports_a_top_level_script(graph):
    wrong = [f"{module} -> {target}" for module, edges in graph.items() for target in edges
             if layer_of(module) < len(LAYERS) and layer_of(target) == len(LAYERS)]
    assert wrong == []


def test_arrows_point_down_the_layers(graph):
    wrong = [f"{module} ({layer_name(module)}) -> {target} ({layer_name(target)})"
             for module, edges in graph.items() for target in edges if layer_of(target) > layer_of(module)]
    assert wrong == []


def test_latent_and_the_web_app_reach_the_metrics_only_for_their_detectors(graph):
    reached = {target for module, edges in graph.items() if layer_name(module) in ("latent", "webapp")
               for target in edges if layer_name(target) == "metrics"}
    assert reached == {"metrics.detectors"}


def test_imports_inside_functions_of_the_package_say_why(graph):
    # An import of the package's own modules inside a function only to save start-up time, with a comment saying so.
    silent = []
    for module, edges in graph.items():
        if layer_of(module) == len(LAYERS):
            continue
        with open(os.path.join(ROOT, package_files(ROOT)[module])) as f:
            lines = f.read().split("\n")
        silent += [f"{module}:{line} -> {target}" for target, places in edges.items()
                   for line, inside in places if inside and "#" not in lines[line - 1]]
    assert silent == []


def test_every_layer_is_a_folder_of_the_package(graph):
    assert {module.split(".")[0] for module in graph if layer_of(module) < len(LAYERS)} == set(LAYERS)


def test_legacy_is_a_thin_facade(graph):
    with open(os.path.join(ROOT, "legacy.py")) as f:
        assert len(f.read().split("\n")) <= LEGACY_MAX_LINES
    assert {target.split(".")[0] for target in graph["legacy"]} == {"training"}
