"""The package's import graph, read from the code (imports inside functions included), and its layout picture.

  python scripts/import_graph.py                                  # the layers, the arrows between them, cycles
  python scripts/import_graph.py --out docs/images/layout.png     # docs/ARCHITECTURE.md's picture

tests/test_architecture.py checks the same graph: no cycle between files, and arrows that point down LAYERS.
A package __init__ that only hands names on is no arrow (importing it reaches the module that defines the name).
"""
import ast
import collections
import os
import sys

import click
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # Run from anywhere.
from sg2_cli.options import shared  # noqa: E402
# Library packages, lowest first: a module may import its own layer (without cycles) and the layers below.
LAYERS = ("dnnlib", "torch_utils", "training", "metrics", "latent", "webapp", "sg2_cli")
SCRIPTS = "top-level scripts"  # legacy.py, generate.py, train.py, ...: above every package
NOT_THE_PACKAGE = ("tests", "benchmarks", "scripts", "docs", "build")

# ----------------------------------------------------------------------------
# The graph.


def package_files(root):
    """{dotted module name: path relative to root} of the package's Python files (not tests, benchmarks, scripts)."""
    files = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in NOT_THE_PACKAGE)
        for name in names:
            if name.endswith(".py"):
                path = os.path.relpath(os.path.join(folder, name), root)
                files[path[:-3].replace(os.sep, ".").removesuffix(".__init__")] = path
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
    """A package __init__ that only hands names on (docstring and imports)."""
    if not path.endswith("__init__.py"):
        return False
    with open(path) as f:
        body = ast.parse(f.read()).body
    return all(isinstance(node, (ast.Import, ast.ImportFrom)) or
               (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) for node in body)


def import_graph(root=ROOT):
    """{module: {imported module: [(line, inside a function?), ...]}} over package_files(root)."""
    files = package_files(root)
    faces = {module for module, path in files.items() if is_face(os.path.join(root, path))}
    graph = {}
    for module, path in files.items():
        with open(os.path.join(root, path)) as f:
            tree = ast.parse(f.read(), path)
        package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
        in_function = {id(node) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                       for node in ast.walk(fn)}
        edges = graph.setdefault(module, {})
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for name in _imported_names(node, package):
                    target = _owning_module(name, files)
                    if target is not None and target != module and target not in faces:
                        edges.setdefault(target, []).append((node.lineno, id(node) in in_function))
    return graph


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan's algorithm), each sorted."""
    index, low, stack, found = {}, {}, [], []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = stack[stack.index(node):]
            del stack[stack.index(node):]
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer_of(module):
    """0 for dnnlib up to len(LAYERS) - 1 for webapp; len(LAYERS) for the top-level scripts."""
    top = module.split(".")[0]
    return LAYERS.index(top) if top in LAYERS else len(LAYERS)


def layer_name(module):
    return LAYERS[layer_of(module)] if layer_of(module) < len(LAYERS) else SCRIPTS


def layer_arrows(graph):
    """{(importing layer, imported layer): number of file-to-file arrows} between different layers."""
    return collections.Counter((layer_of(module), layer_of(target)) for module, edges in graph.items()
                               for target in edges if layer_of(module) != layer_of(target))


# ----------------------------------------------------------------------------
# The picture: one band per layer, top to bottom; a box per file; the arrows between layers on the right.

WIDTH, LABEL_WIDTH, ARROW_WIDTH = 1800, 170, 400
BOX_WIDTH, BOX_HEIGHT, GAP = 236, 40, 8
BAND_COLORS = ["#f3e9dc", "#f4e1e6", "#dde8f3", "#e6e0f2", "#dff0e0", "#fdf3d8", "#e3f1f1", "#eeeeee"]  # one per layer, scripts last


def _band_rows(files):
    per_row = (WIDTH - LABEL_WIDTH - ARROW_WIDTH) // (BOX_WIDTH + GAP)
    return max(1, -(-len(files) // per_row)), per_row


def _draw_band(draw, font, top, layer, files, lines, paths):
    """One layer's band with a box per file (by folder, largest first); returns the band's height."""
    rows, per_row = _band_rows(files)
    height = rows * (BOX_HEIGHT + GAP) + GAP
    name = LAYERS[layer] + "/" if layer < len(LAYERS) else SCRIPTS
    draw.rectangle([0, top, WIDTH - ARROW_WIDTH, top + height], fill=BAND_COLORS[layer], outline="#999999")
    total = sum(lines[module] for module in files)
    draw.text((10, top + 8), name, fill="black", font=font)
    draw.text((10, top + 26), f"{len(files)} files, {total} lines", fill="#555555", font=font)
    for i, module in enumerate(sorted(files, key=lambda m: (os.path.dirname(paths[m]), -lines[m], m))):
        x = LABEL_WIDTH + (i % per_row) * (BOX_WIDTH + GAP)
        y = top + GAP + (i // per_row) * (BOX_HEIGHT + GAP)
        draw.rectangle([x, y, x + BOX_WIDTH, y + BOX_HEIGHT], fill="white", outline="#777777")
        label = paths[module].split(os.sep, 1)[1] if layer < len(LAYERS) else paths[module]
        draw.text((x + 5, y + 4), label, fill="black", font=font)
        draw.text((x + 5, y + 21), f"{lines[module]} lines", fill="#666666", font=font)
    return height


def _draw_arrows(draw, font, band_spans, arrows):
    """Each pair of layers with imports: a line from the importing band to the imported one, and the count."""
    for k, ((upper, lower), count) in enumerate(sorted(arrows.items(), key=lambda item: (-item[0][0], item[0][1]))):
        x = WIDTH - ARROW_WIDTH + 14 + k * (ARROW_WIDTH - 28) // max(len(arrows) - 1, 1)
        y0, y1 = (band_spans[upper][0] + band_spans[upper][1]) // 2, band_spans[lower][0] + 4
        color = "#333333" if upper > lower else "#d00000"  # red: an arrow that runs back up
        if upper < lower:
            y0, y1 = band_spans[upper][0], band_spans[lower][1] - 4
        draw.line([x, y0, x, y1], fill=color, width=2)
        tip = 8 if y1 > y0 else -8
        draw.polygon([(x - 5, y1 - tip), (x + 5, y1 - tip), (x, y1)], fill=color)
        draw.text((x + 3, y0 + 2), str(count), fill=color, font=font)


def _line_count(path):
    with open(path) as f:
        return sum(1 for _ in f)


def draw_layout(graph, out_path, root=ROOT):
    """Write the layout picture of `graph` to out_path (PNG)."""
    files = package_files(root)
    lines = {module: _line_count(os.path.join(root, files[module])) for module in graph}
    by_layer = collections.defaultdict(list)
    for module in graph:
        by_layer[layer_of(module)].append(module)
    heights = {layer: _band_rows(by_layer[layer])[0] * (BOX_HEIGHT + GAP) + GAP for layer in by_layer}
    image = PIL.Image.new("RGB", (WIDTH, 70 + sum(heights.values()) + 10 * len(heights)), "white")
    draw = PIL.ImageDraw.Draw(image)
    font = PIL.ImageFont.load_default(size=13)
    arrows, found = layer_arrows(graph), cycles(graph)
    up = sum(count for (upper, lower), count in arrows.items() if upper < lower)
    draw.text((10, 12), f"{len(graph)} files in {len(by_layer)} layers; {sum(len(e) for e in graph.values())} arrows "
              f"(file imports file), {sum(arrows.values())} of them between layers, {up} running back up; "
              f"{len(found)} cycles", fill="black", font=font)
    draw.text((10, 32), "Each layer imports only the layers below it. On the right: one line per pair of layers, "
              "from the importing layer down to the imported one, with the number of file-to-file imports.",
              fill="#555555", font=font)
    top, band_spans = 60, {}
    for layer in sorted(by_layer, reverse=True):
        height = _draw_band(draw, font, top, layer, by_layer[layer], lines, files)
        band_spans[layer] = (top, top + height)
        top += height + 10
    _draw_arrows(draw, font, band_spans, arrows)
    image.save(out_path)


@click.command()
@shared("--out", required=False, detail="the layout picture (PNG)")
def main(out_path):
    """Print the layers, the arrows between them and any cycle; with --out, draw the picture."""
    graph = import_graph()
    for (upper, lower), count in sorted(layer_arrows(graph).items(), reverse=True):
        names = [LAYERS[i] if i < len(LAYERS) else SCRIPTS for i in (upper, lower)]
        print(f"{names[0]:>18} -> {names[1]:<12} {count:3d} arrows{'  (runs back up)' if upper < lower else ''}")
    print(f"cycles: {cycles(graph) or 'none'}")
    if out_path:
        draw_layout(graph, out_path)
        print(f"wrote {out_path}")


if __name__ == "__main__":
    main()  # noqa: E1120 (click fills the arguments)
