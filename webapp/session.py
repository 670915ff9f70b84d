"""One loaded generator and what an interactive front end computes from it (the web app, app.py).

Everything here calls the library the command-line tools use (latent.space, directions, projection), so a
seed, a mix, an edit or a projection gives the same pixels in the app as in generate.py, style_mixing.py,
edit.py and projector.py. What the session adds is memory between calls: the network stays loaded, the ws
of each seed are cached, SeFa directions are computed once per set of layers, the VGG16 detector is loaded on
the first projection, and one lock keeps the forward passes in order (space.synthesize swaps G's noise
buffers while it runs, so two renders must not overlap).

No web framework is imported here; tests drive a Session directly.
"""
import collections
import os
import tempfile
import threading
import time

import PIL.Image
import torch

import dnnlib
from dnnlib.image_grid import make_grid
from dnnlib.util import UserError
from latent import directions, projection, space, stylespace
from metrics import detectors
from training.checkpoint.load import load_network

MAX_CACHED_WS = 4096     # Seeds whose ws are kept (a 1024 network's ws: 18 x 512 floats, 36 KB each).
MAX_GRID_IMAGES = 64     # Images in one seed grid.
MAX_MIX_SEEDS = 8        # Row or column seeds of one style-mixing sheet.
MAX_PROJECT_STEPS = 5000


class ProjectionStopped(Exception):
    """Raised inside the projector's step callback when the user asked to stop."""


def display_pixels(image):
    """HWC uint8 -> what PIL and the browser take: HW for one channel, HWC for three."""
    return image[:, :, 0] if image.shape[2] == 1 else image


def write_png(path, image):
    """Write an HWC uint8 image as PNG, atomically."""
    dnnlib.util.atomic_write(path, lambda f: PIL.Image.fromarray(display_pixels(image)).save(f, format="PNG"))
    return path


def check_seed(seed, what="seed"):
    """An integer seed in numpy's range, or a UserError naming `what`."""
    if seed is None or float(seed) != int(seed) or not 0 <= int(seed) <= space.MAX_SEED:
        raise UserError(f"{what}: {seed} is not a whole number from 0 to {space.MAX_SEED}")
    return int(seed)


def parse_seeds(text, what, limit):
    """'1-3,7' -> [1, 2, 3, 7]: at least one, at most `limit` seeds; a UserError naming `what` otherwise."""
    try:
        seeds = space.parse_range(text)
    except ValueError as err:
        raise UserError(f"{what}: {err}") from None
    if not seeds or len(seeds) > limit:
        raise UserError(f"{what}: give 1 to {limit} seeds (got {len(seeds)})")
    return seeds


class Session:
    """A generator loaded once, with caches of what has been computed from it."""

    def __init__(self,
        G,                          # The generator (G_ema), in eval mode.
        device      = "cpu",        # Where it runs.
        dtype       = torch.float32,  # Precision of synthesis and projection (torch.bfloat16: bfloat16 synthesis).
        vgg16_spec  = None,         # VGG16 detector for projection: path or URL; None = $SG2_VGG16_DETECTOR or the URL.
        outdir      = None,         # Folder of the files offered for download; None = a new temporary folder.
        name        = "",           # What the network was loaded from, for titles and messages.
        verbose     = True,         # Print the time per image?
    ):
        self.G = G.eval().requires_grad_(False).to(device)
        self.device = torch.device(device)
        self.dtype = dtype
        self.vgg16_spec = vgg16_spec
        self.outdir = outdir or tempfile.mkdtemp(prefix="sg2-app-")
        self.name = name
        self.verbose = verbose
        self.lock = threading.RLock()
        self._ws_cache = collections.OrderedDict()  # (seed, psi, class) -> ws [1, num_ws, w_dim]
        self._sefa_cache = {}                       # layers -> directions [K, w_dim]
        self._vgg16 = None
        self._stop = threading.Event()

    @classmethod
    def open(cls, network, device="cpu", sha256=None, **kwargs):
        """Load G_ema from a path or URL (.pkl, .safetensors or rosinality's .pt) safely; a bad file is a one-line
        UserError."""
        G = load_network(network, key="G_ema", device=device, sha256=sha256)
        return cls(G, device=device, name=str(network), **kwargs)

    # ------------------------------------------------------------------------
    # Seeds and samples.

    def describe(self):
        """One line about the network: size, latent widths and classes."""
        G = self.G
        classes = f", {G.c_dim} classes" if G.c_dim else ""
        return f"{G.img_height}x{G.img_width}, {G.num_ws} ws of {G.w_dim}{classes}, on {self.device}"

    def class_index(self, class_idx):
        """The class for conditional networks (checked), None for unconditional ones."""
        if self.G.c_dim == 0:
            return None
        if class_idx is None or float(class_idx) != int(class_idx) or not 0 <= int(class_idx) < self.G.c_dim:
            raise UserError(f"class: {class_idx} is not a class of this network (0-{self.G.c_dim - 1})")
        return int(class_idx)

    def seed_ws(self, seed, psi=1.0, class_idx=None):
        """ws [1, num_ws, w_dim] of a seed (space.seeds_to_ws), computed once per (seed, psi, class)."""
        key = (check_seed(seed), float(psi), self.class_index(class_idx))
        with self.lock:
            if key in self._ws_cache:
                self._ws_cache.move_to_end(key)
                return self._ws_cache[key]
            ws = space.seeds_to_ws(self.G, [key[0]], key[1], None, key[2], self.device)
            self._ws_cache[key] = ws
            while len(self._ws_cache) > MAX_CACHED_WS:
                self._ws_cache.popitem(last=False)
            return ws

    def render(self, ws, noise_mode="const", noise=None, what="image"):
        """(HWC uint8 images of ws, seconds per image); prints the time when verbose."""
        start = time.perf_counter()
        with self.lock:
            images = space.synthesize(self.G, ws, noise_mode, noise, self.dtype)
        seconds = (time.perf_counter() - start) / len(images)
        if self.verbose:
            print(f"{what}: {seconds * 1000:.0f} ms per image", flush=True)
        return images, seconds

    def sample(self, seed, psi=1.0, noise_mode="const", class_idx=None):
        """dict(image, ws, seconds) of one seed: the pixels generate.py writes for it."""
        ws = self.seed_ws(seed, psi, class_idx)
        images, seconds = self.render(ws, noise_mode, what=f"seed {int(seed)}")
        return dict(image=images[0], ws=ws, seconds=seconds)

    def seed_grid(self, seeds, psi=1.0, noise_mode="const", class_idx=None):
        """[(seed, image)] of up to MAX_GRID_IMAGES seeds."""
        if not 1 <= len(seeds) <= MAX_GRID_IMAGES:
            raise UserError(f"seed grid: give 1 to {MAX_GRID_IMAGES} seeds (got {len(seeds)})")
        ws = torch.cat([self.seed_ws(seed, psi, class_idx) for seed in seeds])
        images, _ = self.render(ws, noise_mode, what=f"grid of {len(seeds)}")
        return list(zip(seeds, images))

    # ------------------------------------------------------------------------
    # Style mixing and layers.

    def layers(self, text):
        """ws indices of 'coarse', 'middle,fine', '0-3,8' or 'all' for this network."""
        try:
            layers = space.parse_layers(text, self.G.num_ws)
        except ValueError as err:
            raise UserError(f"layers: {err}") from None
        if not layers:
            raise UserError(f"layers: none chosen; use coarse, middle, fine, all or indices 0-{self.G.num_ws - 1}")
        return layers

    def mix(self, row_seeds, col_seeds, layers_text, psi=1.0, noise_mode="const", class_idx=None):
        """The style-mixing sheet of style_mixing.py: (rows + 1) x (cols + 1) images, sources on the edges."""
        for what, seeds in (("row seeds", row_seeds), ("column seeds", col_seeds)):
            if not 1 <= len(seeds) <= MAX_MIX_SEEDS:
                raise UserError(f"{what}: give 1 to {MAX_MIX_SEEDS} seeds (got {len(seeds)})")
        layers = self.layers(layers_text)
        start = time.perf_counter()
        with self.lock:
            rows, cols, pairs = space.style_mixing(self.G, row_seeds, col_seeds, layers, psi, noise_mode,
                                                   self.class_index(class_idx), self.device)
        cells = space.style_mixing_cells(rows, cols, pairs, row_seeds, col_seeds)
        count = len(rows) + len(cols) + len(pairs)
        if self.verbose:
            print(f"mix: {(time.perf_counter() - start) * 1000 / count:.0f} ms per image", flush=True)
        return make_grid(cells, len(row_seeds) + 1, len(col_seeds) + 1)

    # ------------------------------------------------------------------------
    # Directions and editing.

    def sefa(self, layers_text="all", num=10):
        """SeFa directions [num, w_dim] of the layers' styles, computed on first use."""
        layers = tuple(self.layers(layers_text))
        key = (layers, num)
        with self.lock:
            if key not in self._sefa_cache:
                self._sefa_cache[key] = directions.sefa(self.G, list(layers), num)[0]
            return self._sefa_cache[key]

    def directions_file(self, path):
        """Every direction [K, w_dim] of a direction file (.npy, .npz, .pt), loaded safely."""
        if not path:
            raise UserError("direction file: none uploaded")
        return directions.load_directions(path, self.G.w_dim)

    def style_direction(self, path):
        """(vectors, layers) of a style-space direction (a .zip of StyleGAN-Human's style_vect_mean_<i>.pkl
        files), read as numpy arrays only and checked against this network's style layers."""
        if not path:
            raise UserError("direction file: none uploaded")
        return stylespace.prepare_edit(self.G, path)

    def edit_styles(self, ws, vectors, layers, strength, noise_mode="const", noise=None):
        """(image, seconds): ws drawn with strength * vector added to the styles of each style layer."""
        start = time.perf_counter()
        with self.lock:
            offsets = stylespace.style_offsets(self.G, vectors, layers, float(strength), self.device)
            image = space.synthesize(self.G, ws, noise_mode, noise, self.dtype, style_offsets=offsets)[0]
        seconds = time.perf_counter() - start
        if self.verbose:
            print(f"style edit: {seconds * 1000:.0f} ms per image", flush=True)
        return image, seconds

    def edit(self, ws, found, strengths, layers_text="all", noise_mode="const", noise=None):
        """(edited ws, image, seconds): ws + sum of strength_k * direction_k at the layers."""
        if len(strengths) > len(found):
            raise UserError(f"edit: {len(strengths)} strengths for {len(found)} directions")
        layers = self.layers(layers_text)
        edited = ws
        for direction, strength in zip(found, strengths):
            if strength:
                edited = directions.apply_direction(edited, direction, float(strength), layers)
        images, seconds = self.render(edited, noise_mode, noise, what="edit")
        return edited, images[0], seconds

    # ------------------------------------------------------------------------
    # Projection.

    def vgg16(self):
        """The VGG16 detector the metrics use (--vgg16, $SG2_VGG16_DETECTOR, or the standard URL), loaded once."""
        if self._vgg16 is None:
            self._vgg16 = detectors.open_detector("vgg16", self.vgg16_spec, self.device, verbose=self.verbose)
        return self._vgg16

    def target(self, path, fit="pad", pad_color="white"):
        """A photo file fitted to the network's frame and channels (HWC uint8), as projector.py fits it."""
        if not path:
            raise UserError("photo: none uploaded")
        try:
            color = projection.parse_color(pad_color)
        except ValueError as err:
            raise UserError(f"padding colour: {err}") from None
        image = projection.load_target(path, self.G.img_height, self.G.img_width, fit, color)
        return projection.to_channels(image, self.G.img_channels)

    def stop(self):
        """Ask a running projection to stop after its current step."""
        self._stop.set()

    def project(self, target, num_steps=200, space_name="w", seed=303, on_step=None):
        """dict(ws, noise, image, steps, stopped): projection.project in W, or W+ started from the W result
        (projector.py's default); `on_step(done, total)` after each step; stop() ends it early."""
        if not 1 <= num_steps <= MAX_PROJECT_STEPS:
            raise UserError(f"steps: {num_steps} is not between 1 and {MAX_PROJECT_STEPS}")
        stages = ["w", "wplus"] if space_name == "wplus" else ["w"]
        vgg16 = self.vgg16()
        self._stop.clear()
        latest, done = {}, [0]

        def step_callback(stage, step, ws, loss, noise):
            latest.update(ws=ws.clone(), noise={name: value.clone() for name, value in noise.items()})
            done[0] += 1
            if on_step is not None:
                on_step(done[0], num_steps * len(stages))
            if self._stop.is_set():
                raise ProjectionStopped()

        try:  # no lock: project() optimises its own copy of G
            result = projection.project_stages(self.G, target, vgg16, space_name, num_steps, "w", seed, step_callback,
                                               device=self.device, dtype=self.dtype)
            latest.update(ws=result["ws"], noise=result["noise"])
        except ProjectionStopped:
            pass
        images, _ = self.render(latest["ws"], "const", latest["noise"], what="projection")
        return dict(ws=latest["ws"], noise=latest["noise"], image=images[0], steps=done[0],
                    stopped=done[0] < num_steps * len(stages))

    # ------------------------------------------------------------------------
    # Downloads.

    def export(self, stem, image, ws, noise=None):
        """(png path, npz path) in the session's folder: the image, and its ws (plus noise maps) as
        generate.py --projected-w reads them."""
        png = write_png(os.path.join(self.outdir, f"{stem}.png"), image)
        npz = space.save_latents(os.path.join(self.outdir, f"{stem}.npz"), ws, noise)
        return png, npz
