"""The web app's page (gradio): tabs, their components, and events wired to webapp.session.Session.

Each callback is a thin adapter: it reads the components' values, calls a Session method (the library the
command-line tools use) and returns {component: new value}. Errors become a message in the tab's status line
(see `guarded`), so bad input never stops the server. Sliders and settings use gradio's `always_last` trigger
mode: while an image is being made, newer values replace the waiting one, so stale values are never rendered.

gradio is an optional dependency (pip install .[app]) and is imported only by import_gradio().
"""
import functools
import importlib.util
import os
import random
import re
import sys
import traceback

import dnnlib
from dnnlib.util import UserError

from latent import projection, space
from .session import MAX_GRID_IMAGES, MAX_MIX_SEEDS, display_pixels, parse_seeds

NOISE_MODES = ["const", "random", "none"]
LAYER_CHOICES = ["all", "coarse", "middle", "fine", "coarse,middle", "middle,fine"]
NUM_SLIDERS = 8           # Direction sliders on the Edit tab (SeFa's first eight, or a file's first eight).
STRENGTH_RANGE = 15.0     # Slider range; SeFa directions have unit length, w coordinates are of order 1.
IMAGE_HEIGHT = 512        # Displayed height of the main images, in CSS pixels.
SOURCES = ["seed", "projected photo"]
CSS = """
.main-image img { width: 100%; height: 100%; object-fit: contain; }
.pixelated img { image-rendering: pixelated; }
"""  # images fill their box at the network's aspect; small networks show pixels, not blur
GRADIO_MISSING = "the web app needs gradio, which is not installed: pip install .[app]"


def check_gradio():
    """Fail early, before a network is loaded, when gradio is missing (without paying for its import)."""
    try:
        found = importlib.util.find_spec("gradio") is not None
    except (ImportError, ValueError):  # ValueError: an entry of None in sys.modules
        found = False
    if not found:
        raise UserError(GRADIO_MISSING)


def import_gradio():
    """gradio, or a one-line error saying how to install it (it is an optional dependency)."""
    check_gradio()
    try:
        import gradio  # here: an optional extra (pip install .[app]), and a slow import
    except ImportError:
        raise UserError(GRADIO_MISSING) from None
    return gradio


def markdown_text(text):
    """Plain text shown literally by gr.Markdown (paths hold underscores and asterisks)."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~])", r"\\\1", str(text))


def log_line(text):
    """One line in the app's terminal (control characters escaped: messages may quote uploaded file names)."""
    print(f"app: {dnnlib.util.escape_text(text)}", file=sys.stderr, flush=True)


def guarded(status):
    """Run a callback that returns {component: value}; on any error, show its one-line message in `status`
    instead (the other outputs keep their values, the server keeps running) and log it as one line in the
    terminal. A traceback is printed only for unexpected errors and only with --verbose or $SG2_VERBOSE."""
    def wrap(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except UserError as err:
                message = str(err)
                log_line(f"{fn.__name__}: {message}")
            except Exception as err:  # noqa: BLE001 -- a page must survive anything a callback meets
                message = f"{type(err).__name__}: {err}"
                log_line(f"{fn.__name__} failed: {message}")
                if "--verbose" in sys.argv[1:] or os.environ.get("SG2_VERBOSE"):
                    traceback.print_exc()
                message += " (see the terminal)"
            return {status: "**Error:** " + markdown_text(message)}
        return run
    return wrap


# ----------------------------------------------------------------------------
# The tabs. Each builds its components and wires their events to Session methods.


def settings_row(gr, session):
    """Truncation, noise mode and class: shared by every tab."""
    G = session.G
    with gr.Row():
        psi = gr.Slider(-1.0, 2.0, value=1.0, step=0.05, label="Truncation psi", elem_id="psi")
        noise = gr.Radio(NOISE_MODES, value="const", label="Noise mode", elem_id="noise-mode")
        label = f"Class (0-{G.c_dim - 1})" if G.c_dim else "Class"
        cls = gr.Number(value=0, precision=0, minimum=0, maximum=max(G.c_dim - 1, 0), label=label,
                        visible=G.c_dim > 0, elem_id="class")
    return dnnlib.EasyDict(psi=psi, noise=noise, cls=cls, inputs=[psi, noise, cls])


def image_box(gr, session, label, elem_id):
    small = session.G.img_height < 256
    return gr.Image(label=label, format="png", height=IMAGE_HEIGHT, interactive=False, elem_id=elem_id,
                    elem_classes=["main-image", "pixelated"] if small else ["main-image"],
                    buttons=["download", "fullscreen"])


def sample_tab(gr, session, shared):
    with gr.Row():
        with gr.Column(scale=1):
            seed = gr.Number(value=0, precision=0, minimum=0, maximum=space.MAX_SEED, label="Seed", elem_id="seed")
            random_button = gr.Button("Random seed", elem_id="random-seed")
            with gr.Row():
                png_file = gr.DownloadButton("PNG", elem_id="download-png")
                w_file = gr.DownloadButton("w (.npz)", elem_id="download-w")
            status = gr.Markdown(elem_id="sample-status")
        with gr.Column(scale=2):
            image = image_box(gr, session, "Image", "sample-image")
    with gr.Accordion("Seed grid", open=False, elem_id="grid-accordion"):
        with gr.Row():
            grid_seeds = gr.Textbox(value="0-15", label=f"Seeds (up to {MAX_GRID_IMAGES}; click one to open it)",
                                    elem_id="grid-seeds")
            grid_button = gr.Button("Show grid", elem_id="grid-button")
        gallery = gr.Gallery(columns=8, format="png", height="auto", elem_id="seed-grid", label="Seeds")
        grid_state = gr.State([])

    @guarded(status)
    def render(seed_value, psi, noise_mode, class_idx):
        result = session.sample(seed_value, psi, noise_mode, class_idx)
        png, npz = session.export(f"seed{int(seed_value):04d}", result["image"], result["ws"])
        return {image: display_pixels(result["image"]), png_file: png, w_file: npz,
                status: f"seed {int(seed_value)}: {result['seconds'] * 1000:.0f} ms"}

    @guarded(status)
    def grid(text, psi, noise_mode, class_idx):
        seeds = parse_seeds(text, "seed grid", MAX_GRID_IMAGES)
        cells = session.seed_grid(seeds, psi, noise_mode, class_idx)
        return {gallery: [(display_pixels(img), f"seed {s}") for s, img in cells], grid_state: seeds,
                status: f"grid of {len(seeds)} seeds"}

    def pick(seeds, evt: gr.SelectData):
        return seeds[evt.index] if 0 <= evt.index < len(seeds) else gr.update()

    outputs = [image, png_file, w_file, status]
    inputs = [seed] + shared.inputs
    for trigger in [seed.change] + [c.change for c in shared.inputs]:
        trigger(render, inputs, outputs, trigger_mode="always_last", show_progress="minimal")
    random_button.click(lambda: random.randint(0, 2 ** 31 - 1), None, seed)
    grid_button.click(grid, [grid_seeds] + shared.inputs, [gallery, grid_state, status])
    gallery.select(pick, grid_state, seed)
    return dnnlib.EasyDict(seed=seed, load=(render, inputs, outputs))


def mix_tab(gr, session, shared):
    with gr.Row():
        with gr.Column(scale=1):
            rows = gr.Textbox(value="1-3", label="Row seeds (they keep their other layers)", elem_id="mix-rows")
            cols = gr.Textbox(value="10-13", label="Column seeds (they give the chosen layers)", elem_id="mix-cols")
            layers = gr.Dropdown(LAYER_CHOICES, value="coarse", allow_custom_value=True, elem_id="mix-layers",
                                 label="Layers taken from the columns (coarse, middle, fine, all, or e.g. 0-3,8)")
            button = gr.Button("Mix", variant="primary", elem_id="mix-button")
            status = gr.Markdown(elem_id="mix-status")
        with gr.Column(scale=2):
            sheet = image_box(gr, session, "Style mixing", "mix-image")

    @guarded(status)
    def mix(row_text, col_text, layers_text, psi, noise_mode, class_idx):
        row_seeds = parse_seeds(row_text, "row seeds", MAX_MIX_SEEDS)
        col_seeds = parse_seeds(col_text, "column seeds", MAX_MIX_SEEDS)
        grid = session.mix(row_seeds, col_seeds, layers_text, psi, noise_mode, class_idx)
        return {sheet: display_pixels(grid), status: f"layers {session.layers(layers_text)}"}

    inputs = [rows, cols, layers] + shared.inputs
    button.click(mix, inputs, [sheet, status])
    layers.change(mix, inputs, [sheet, status], trigger_mode="always_last", show_progress="minimal")


def slider_updates(gr, names=None):
    """Every slider back to 0; with names, one slider per name (so labelled) and the rest hidden."""
    if names is None:
        return [gr.update(value=0.0)] * NUM_SLIDERS
    return [gr.update(visible=k < len(names), value=0.0, label=names[k] if k < len(names) else "")
            for k in range(NUM_SLIDERS)]


def edit_layout(gr, session):
    """The Edit tab's components: latent and layers, direction sliders, the edited image."""
    with gr.Row():
        with gr.Column(scale=1):
            source = gr.Radio(SOURCES, value="seed", label="Edit", elem_id="edit-source")
            seed = gr.Number(value=0, precision=0, minimum=0, maximum=space.MAX_SEED, label="Seed",
                             elem_id="edit-seed")
            layers = gr.Dropdown(LAYER_CHOICES, value="all", allow_custom_value=True, elem_id="edit-layers",
                                 label="Layers (SeFa factorises them; the directions are added there)")
            upload = gr.File(label="Direction file (.npy, .npz, .pt: [w_dim] or [K, w_dim]; or a .zip of "
                                   "style_vect_mean_<i>.pkl files, a style-space direction)", type="filepath",
                             height=150, elem_id="direction-file")
            sefa_button = gr.Button("Use SeFa directions", elem_id="use-sefa")
            status = gr.Markdown(elem_id="edit-status")
        with gr.Column(scale=1):
            sliders = [gr.Slider(-STRENGTH_RANGE, STRENGTH_RANGE, value=0.0, step=0.5, label=f"SeFa {k}",
                                 elem_id=f"direction-{k}") for k in range(NUM_SLIDERS)]
            reset = gr.Button("Reset sliders", elem_id="reset-sliders")
        with gr.Column(scale=1):
            image = image_box(gr, session, "Edited", "edit-image")
    found = gr.State(None)  # dict(source, vectors [K, w_dim]) of the directions on the sliders
    return dnnlib.EasyDict(source=source, seed=seed, layers=layers, upload=upload, sefa_button=sefa_button,
                           status=status, sliders=sliders, reset=reset, image=image, found=found)


def uploaded_directions(session, path):
    """(directions for the sliders, slider names) of an uploaded file: a .zip of style vectors is one style-space
    slider; any other file holds W directions, a slider each."""
    name = os.path.basename(path)
    if name.lower().endswith(".zip"):
        vectors, layers = session.style_direction(path)
        return dict(source=name, style=(vectors, layers)), [f"{name} (style layers {', '.join(map(str, layers))})"]
    vectors = session.directions_file(path)[:NUM_SLIDERS]
    names = [name] if len(vectors) == 1 else [f"{name}:{k}" for k in range(len(vectors))]
    return dict(source=name, vectors=vectors), names


def edit_tab(gr, session, shared, project_state):
    page = edit_layout(gr, session)
    image, status, sliders, found = page.image, page.status, page.sliders, page.found
    names = ["source", "seed", "layers", "found", "projected", "psi", "noise", "cls"]  # `inputs` below, then sliders

    def named(args):
        """The values of `inputs` by name."""
        values = dnnlib.EasyDict(zip(names, args))
        values.strengths = list(args[len(names):])
        return values

    def draw(v, chosen, strengths):
        """{image, status}: the chosen latent moved along the chosen directions."""
        if v.source == SOURCES[1]:
            if v.projected is None:
                return {status: "No projected photo yet: run the Project tab first."}
            ws, noise = v.projected["ws"], v.projected["noise"]
        else:
            ws, noise = session.seed_ws(v.seed, v.psi, v.cls), None
        if "style" in chosen:  # a style-space direction: one slider, its vectors added to the styles
            pixels, seconds = session.edit_styles(ws, *chosen["style"], strengths[0], v.noise, noise)
        else:
            vectors = chosen["vectors"]
            _, pixels, seconds = session.edit(ws, vectors, strengths[:len(vectors)], v.layers, v.noise, noise)
        return {image: display_pixels(pixels), status: f"{chosen['source']}: {seconds * 1000:.0f} ms"}

    def with_directions(v, chosen, names=None):
        """Directions on the sliders (all at 0; new names when given), and the image drawn so."""
        updates = dict(zip(sliders, slider_updates(gr, names)))
        return {**updates, found: chosen, **draw(v, chosen, [0.0] * NUM_SLIDERS)}

    def sefa_directions(v):
        vectors = session.sefa(v.layers, NUM_SLIDERS)
        return with_directions(v, dict(source="SeFa", vectors=vectors), [f"SeFa {k}" for k in range(len(vectors))])

    @guarded(status)
    def render(*args):
        v = named(args)
        return sefa_directions(v) if v.found is None else draw(v, v.found, v.strengths)  # SeFa on first use

    @guarded(status)
    def refresh(*args):  # a shared setting changed: redraw once the tab is in use
        v = named(args)
        return {} if v.found is None else draw(v, v.found, v.strengths)

    @guarded(status)
    def use_sefa(*args):
        return sefa_directions(named(args))

    @guarded(status)
    def on_layers(*args):  # SeFa directions follow the layers; a file's directions stay
        v = named(args)
        return sefa_directions(v) if v.found is None or v.found["source"] == "SeFa" else draw(v, v.found, v.strengths)

    @guarded(status)
    def on_reset(*args):
        v = named(args)
        return sefa_directions(v) if v.found is None else with_directions(v, v.found)

    @guarded(status)
    def use_file(path, *args):
        if path is None:
            return {}
        chosen, slider_names = uploaded_directions(session, path)
        return with_directions(named(args), chosen, slider_names)

    inputs = [page.source, page.seed, page.layers, found, project_state] + shared.inputs + sliders
    outputs = sliders + [found, image, status]
    live = dict(inputs=inputs, outputs=outputs, trigger_mode="always_last", show_progress="minimal")
    for trigger in [s.input for s in sliders] + [page.source.change, page.seed.change]:
        trigger(render, **live)
    for setting in shared.inputs:
        setting.change(refresh, **live)
    page.layers.change(on_layers, **live)
    page.sefa_button.click(use_sefa, inputs, outputs)
    page.reset.click(on_reset, inputs, outputs)
    page.upload.upload(use_file, [page.upload] + inputs, outputs)
    return dnnlib.EasyDict(source=page.source, first_use=(render, inputs, outputs))


def project_tab(gr, session, project_state):
    with gr.Row():
        with gr.Column(scale=1):
            photo = gr.File(label="Photo (any size; fitted to the network's frame)", type="filepath",
                            height=150, elem_id="photo")
            fit = gr.Radio(list(projection.FITS), value="pad", label="Fit", elem_id="fit")
            steps = gr.Slider(10, 1000, value=200, step=10, label="Steps", elem_id="project-steps")
            space_name = gr.Radio([("W", "w"), ("W+ (after W)", "wplus")], value="w", label="Latent space")
            with gr.Row():
                run = gr.Button("Project", variant="primary", elem_id="project-button")
                stop = gr.Button("Stop", variant="stop", elem_id="stop-button")
            with gr.Row():
                png_file = gr.DownloadButton("PNG", elem_id="download-proj-png")
                w_file = gr.DownloadButton("projected_w.npz", elem_id="download-proj-w")
            to_edit = gr.Button("Edit the result", elem_id="edit-projection")
            status = gr.Markdown(elem_id="project-status")
        with gr.Column(scale=1):
            target = image_box(gr, session, "Target", "target-image")
        with gr.Column(scale=1):
            result = image_box(gr, session, "Projection", "project-image")

    @guarded(status)
    def show_target(path, fit_name):
        if path is None:
            return {}
        return {target: display_pixels(session.target(path, fit_name)), status: "Ready to project."}

    @guarded(status)
    def run_projection(path, fit_name, num_steps, space_value, progress=gr.Progress()):
        fitted = session.target(path, fit_name)
        progress(0, desc="Loading the VGG16 detector")
        found = session.project(fitted, int(num_steps), space_value,
                                on_step=lambda done, total: progress((done, total), desc="Projecting"))
        png, npz = session.export("projected_w", found["image"], found["ws"], found["noise"])
        how = "stopped after" if found["stopped"] else "done:"
        return {result: display_pixels(found["image"]), png_file: png, w_file: npz,
                status: f"{how} {found['steps']} steps", project_state: dict(ws=found["ws"], noise=found["noise"])}

    photo.upload(show_target, [photo, fit], [target, status])
    fit.change(show_target, [photo, fit], [target, status])
    run.click(run_projection, [photo, fit, steps, space_name], [result, png_file, w_file, status, project_state])
    stop.click(session.stop, None, None, queue=False)
    return to_edit


def build_app(session):
    """The gradio Blocks of the app for one loaded network."""
    gr = import_gradio()
    # delete_cache: the images served are copied into gradio's cache; drop those older than an hour.
    with gr.Blocks(title="StyleGAN2 explorer", analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        gr.Markdown(f"**{markdown_text(os.path.basename(session.name) or 'network')}**: "
                    f"{markdown_text(session.describe())}")
        shared = settings_row(gr, session)
        project_state = gr.State(None)  # dict(ws, noise) of the last projection
        with gr.Tabs() as tabs:
            with gr.Tab("Sample", id="sample"):
                sample = sample_tab(gr, session, shared)
            with gr.Tab("Mix", id="mix"):
                mix_tab(gr, session, shared)
            with gr.Tab("Edit", id="edit") as edit_page:
                edit = edit_tab(gr, session, shared, project_state)
            with gr.Tab("Project", id="project"):
                to_edit = project_tab(gr, session, project_state)
        demo.load(*sample.load)
        edit_page.select(*edit.first_use)
        to_edit.click(lambda: (gr.Tabs(selected="edit"), SOURCES[1]), None, [tabs, edit.source])
    return demo
