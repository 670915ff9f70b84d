"""The import graph of the package, read from the code (imports inside functions included; scripts/import_graph.py
builds it): no cycle between files, arrows that point down the layers of docs/ARCHITECTURE.md, no library module
importing a top-level script, and legacy.py a thin facade."""
import importlib.util
import os
import textwrap

import pytest

from helpers import ROOT

LEGACY_MAX_LINES = 150


def _load_import_graph():
    spec = importlib.util.spec_from_file_location("import_graph", os.path.join(ROOT, "scripts", "import_graph.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ig = _load_import_graph()
SCRIPT_LAYER = len(ig.LAYERS)


@pytest.fixture(scope="module")
def graph():
    return ig.import_graph(ROOT)


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
    found = ig.import_graph(str(tmp_path))
    assert found == {"pkg": {"pkg.a": [(2, False)]}, "pkg.a": {"pkg.b": [(2, False)], "pkg.c": [(6, True)]},
                     "pkg.b": {}, "pkg.c": {"pkg.a": [(2, True)]}, "tool": {"pkg.a": [(1, False)]}}
    assert ig.cycles(found) == [["pkg.a", "pkg.c"]]


def test_no_cycle_between_files(graph):
    assert ig.cycles(graph) == []


def test_library_never_imports_a_top_level_script(graph):
    wrong = [f"{module} -> {target}" for module, edges in graph.items() for target in edges
             if ig.layer_of(module) < SCRIPT_LAYER and ig.layer_of(target) == SCRIPT_LAYER]
    assert wrong == []


def test_arrows_point_down_the_layers(graph):
    wrong = [f"{module} ({ig.layer_name(module)}) -> {target} ({ig.layer_name(target)})"
             for module, edges in graph.items() for target in edges if ig.layer_of(target) > ig.layer_of(module)]
    assert wrong == []


def test_latent_and_the_web_app_reach_the_metrics_only_for_their_detectors(graph):
    reached = {target for module, edges in graph.items() if ig.layer_name(module) in ("latent", "webapp")
               for target in edges if ig.layer_name(target) == "metrics"}
    assert reached == {"metrics.detectors"}


def test_imports_inside_functions_of_the_package_say_why(graph):
    # An import of the package's own modules inside a function only to save start-up time, with a comment saying so.
    files = ig.package_files(ROOT)
    silent = []
    for module, edges in graph.items():
        if ig.layer_of(module) == SCRIPT_LAYER:
            continue
        with open(os.path.join(ROOT, files[module])) as f:
            lines = f.read().split("\n")
        silent += [f"{module}:{line} -> {target}" for target, places in edges.items()
                   for line, inside in places if inside and "#" not in lines[line - 1]]
    assert silent == []


def test_every_layer_is_a_folder_of_the_package(graph):
    assert {module.split(".")[0] for module in graph if ig.layer_of(module) < SCRIPT_LAYER} == set(ig.LAYERS)


def test_legacy_is_a_thin_facade(graph):
    with open(os.path.join(ROOT, "legacy.py")) as f:
        assert len(f.read().split("\n")) <= LEGACY_MAX_LINES
    assert {target.split(".")[0] for target in graph["legacy"]} == {"training"}


def test_layout_picture_draws(graph, tmp_path):
    ig.draw_layout(graph, str(tmp_path / "layout.png"))
    import PIL.Image
    with PIL.Image.open(tmp_path / "layout.png") as image:
        assert image.width == ig.WIDTH and image.height > 300
