"""Every ```bash block of README.md that can run on a CPU runs here, command by command, in the README's order, in
one workspace: the commands are the README's own, with the demo's stand-ins in place of what this machine lacks.

Stand-ins (created in the workspace under the names the README uses, so most commands run unchanged):
  SHHQ-1.0_sg2_512.pkl, SHHQ-1.0_sg2_1024.pkl   the reference 64x32 network of the compat fixture, G_ema only
                                                (as the released pickles hold G_ema only)
  full-512x256-with-D.pkl                       the same checkpoint with G, D and G_ema
  $NET                                          the 64x32 network (the README's "CPU demo's generator")
  SHHQ-512x256.zip, SHHQ-1024x512.zip           demo figures at 64x32 (scripts/make_demo_data.py)
  my-photos/ + my-masks/, SHHQ/images/ + SHHQ/masks/   demo figures as PNGs, and masks around each figure
  $SG2_INCEPTION_DETECTOR, $SG2_VGG16_DETECTOR, $SG2_DINOV2_DETECTOR   stand-in detectors
                                                (metrics/stand_in_detector.py)
  latent_direction/                             StyleGAN-Human's direction files laid out as its repository has
                                                them (ss/upper_length/style_vect_mean_<i>.pkl, its statis.csv,
                                                sefa/upper_length.pt), random vectors sized for the stand-in
Substitutions (SUBSTITUTIONS): 64x32 where the README says 512x256 (--height/--width), 2 processes where it
says 4 or 8 GPUs (torchrun as `python -m torch.distributed.run --standalone`), the stand-ins for `...`, 20
projection and 10 tuning steps where it says 300 and 150, and the run folders and snapshots the earlier commands
made where the README names its own (e.g. training-runs/00003-...). Training commands get a few steps at small
sizes appended (TRAIN_STAND_INS), metrics a cap on generated images (METRIC_STAND_INS); later options win, so
the README's stay in the command. The stand-in network has 9 style layers where the README's has 17, so the
style-space edit of layers 0-14 edits layers 0-8; its channel table is not one rosinality's Generator builds, so
the conversion to rosinality's format gets --custom-channels, and the rosinality checkpoint the README converts
back (550000.pt) is the file that conversion wrote.

To add a README block: write it in README.md; if a command needs something here, add a rule to RULES (the first
matching rule applies): test_every_readme_command_has_a_rule fails until every command has one. A command that
cannot run on a CPU gets a Skip with the reason. Run the module as a whole: later sections use what earlier
ones made (out/sefa.npz, the training runs, datasets/*.zip).
"""
import collections
import csv
import glob
import os
import pickle
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch

import legacy
from helpers import ROOT
from helpers_training import make_figures
from latent import stylespace
from metrics.stand_in_detector import save_stand_in_detector, save_stand_in_dinov2

Skip = collections.namedtuple("Skip", "reason")
Run = collections.namedtuple("Run", "extra", defaults=((),))

TRAIN_STAND_INS = ("--batch=8", "--kimg=0.016", "--tick=0.008", "--snap=1", "--metrics=none", "--device=cpu",
                   "--workers=0", "--grid=2x4")
SMALL_NETWORK = ("--cbase=512", "--cmax=32")  # fresh runs only: a checkpoint's own architecture may not be changed
METRIC_STAND_INS = ("--max-gen=64", "--device=cpu")

RULES = [
    (r"^make (demo|test|app)$", Skip("builds .venv in the checkout; the demo's steps run below, `make test` is "
                                     "this suite")),
    (r"^make test-quick$", Skip("this suite without the tests marked slow")),
    (r"^make mutation$", Skip("breaks the package in a scratch copy and runs the tests there: 7-11 minutes")),
    (r"^pip install ", Skip("installs into the environment; tests/test_packaging.py installs the wheel")),
    (r"^python app\.py ", Skip("serves until stopped; tests/test_app.py starts it")),
    (r"^torchrun --nnodes=", Skip("several machines")),
    (r"^python -m torch_utils\.ops$", Skip("builds the CUDA kernels with nvcc; tests/test_cuda_build.py")),
    (r"^(python benchmarks/|OUT=out bash benchmarks/)", Skip("benchmarks: minutes each, results in "
                                                             "benchmarks/RESULTS.md")),
    (r"--network=shhq-1\.0-", Skip("downloads from Google Drive; tests/test_releases.py serves a loopback Drive")),
    (r"^python train\.py .*--resume=(SHHQ-1\.0_sg2_512\.pkl|full-512x256-with-D\.pkl)", Run(TRAIN_STAND_INS)),
    (r"^python train\.py .*--ref-stats=", Run(tuple(a for a in TRAIN_STAND_INS if a != "--metrics=none")
                                              + SMALL_NETWORK + ("--max-gen=64",))),
    (r"^python train\.py .*--resume=auto", Run(TRAIN_STAND_INS + SMALL_NETWORK + ("--kimg=0.024",))),
    (r"^python train\.py ", Run(TRAIN_STAND_INS + SMALL_NETWORK)),
    (r"^python calc_metrics\.py .*--export-stats=", Run()),
    (r"^(python calc_metrics\.py |torchrun --nproc_per_node=\d+ calc_metrics\.py )", Run(METRIC_STAND_INS)),
    (r"^python convert\.py .*--to=rosinality", Run(("--custom-channels",))),
    (r"^python (generate|style_mixing|gen_video|edit|projector|convert|bg_white|dataset_tool)\.py ", Run()),
    (r"^python generate\.py --list-networks$", Run()),
    (r"^(python scripts/make_demo_data\.py |unzip -p |python -m metrics\.stand_in_detector )", Run()),
]


def newest(pattern):
    """The last path that matches (run folders and snapshot names sort by number)."""
    found = sorted(glob.glob(pattern))
    assert found, f"nothing matches {pattern}: an earlier README command should have made it"
    return found[-1]


SUBSTITUTIONS = [  # (regex, what replaces it: text, or a function of the workspace)
    (r"--height=512 --width=256", "--height=64 --width=32"),
    (r"--num-steps=300\b", "--num-steps=20"),   # the projector's search: what is tested is that it runs
    (r"--pti-steps=150\b", "--pti-steps=10"),
    (r"--layers=0-14\b", "--layers=0-8"),  # style layers of the stand-in network
    (r"--network=550000\.pt\b", "--network=stylegan_human_1024.pt"),
    (r"--gpus=[48]\b", "--gpus=2"),
    (r"^torchrun --nproc_per_node=4 ", "python -m torch.distributed.run --standalone --nproc_per_node=2 "),
    (r"--network=\.\.\.(?=\s|$)", "--network=SHHQ-1.0_sg2_512.pkl"),  # the README's placeholders
    (r"--data=\.\.\.(?=\s|$)", "--data=datasets/shhq-512x256.zip"),
    (r"training-runs/00003-SHHQ-1024x512-\S+", lambda ws: newest(f"{ws}/training-runs/*-SHHQ-1024x512-*")),
    (r"finetune-runs/00000-my-512x256-\S+/network-snapshot-000400\.pkl",
     lambda ws: newest(f"{ws}/finetune-runs/00000-*/network-snapshot-*.pkl")),
    (r"runs/00000-shhq-512x256-shhq/network-snapshot-001000\.pkl",
     lambda ws: newest(f"{ws}/training-runs/*/network-snapshot-*.pkl")),
]


# ----------------------------------------------------------------------------
# README.md's bash blocks.


def readme_blocks():
    """[(section heading, [command, ...])] of README.md's ```bash blocks, continuation lines joined, comments
    dropped."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    blocks, section = [], None
    for match in re.finditer(r"^(#{2,3} [^\n]*)$|^```bash\n(.*?)^```", text, re.M | re.S):
        if match.group(1):
            section = match.group(1).lstrip("# ")
            continue
        commands = []
        for line in match.group(2).replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                # Plain words (variables and redirections too) as written, anything else quoted again for bash.
                commands.append(" ".join(w if re.fullmatch(r"[\w@%+=:,./$>-]+", w) else shlex.quote(w) for w in words))
        blocks.append((section, commands))
    return blocks


def sections():
    """{section: [commands]} in the README's order."""
    found = collections.OrderedDict()
    for section, commands in readme_blocks():
        found.setdefault(section, []).extend(commands)
    return found


def rule_for(command):
    for pattern, action in RULES:
        if re.search(pattern, command):
            return action
    return None


def test_every_readme_command_has_a_rule():
    commands = [c for cs in sections().values() for c in cs]
    assert len(commands) > 30  # the parser found the blocks
    missing = [c for c in commands if rule_for(c) is None]
    assert not missing, f"README commands without a rule in tests/test_readme_commands.py RULES: {missing}"
    runnable = [c for c in commands if isinstance(rule_for(c), Run)]
    assert len(runnable) >= 30 and all(rule_for(c).reason for c in commands if isinstance(rule_for(c), Skip))


# ----------------------------------------------------------------------------
# The workspace.


def save_g_ema_only(source, dest):
    data = legacy.load_network_pkl(open(source, "rb"))
    legacy.save_network_pkl(dest, dict(G_ema=data["G_ema"], training_set_kwargs=None))


def stylegan_human_directions(folder, network, seed=7):
    """StyleGAN-Human's latent_direction/ files for `network`: one random style vector per style layer (pickled
    arrays, as its ss/ folders hold), the channel table of layer 5, and a W direction for edit.py apply."""
    G = legacy.load_network_pkl(open(network, "rb"))["G_ema"]
    rng = np.random.RandomState(seed)
    channels = [conv.in_channels for _, conv in stylespace.style_layers(G)]
    ss = os.path.join(folder, "ss", "upper_length")
    os.makedirs(ss)
    for layer, count in enumerate(channels):
        with open(os.path.join(ss, f"style_vect_mean_{layer}.pkl"), "wb") as f:
            pickle.dump(rng.randn(count).astype(np.float32), f)
    statis = os.path.join(folder, "ss_statics", "upper_length_statis", "5")
    os.makedirs(statis)
    with open(os.path.join(statis, "statis.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["", "channel", "strength"])
        for channel in range(channels[5]):
            writer.writerow([channel, channel, rng.randn() * 0.005])
    os.makedirs(os.path.join(folder, "sefa"))
    torch.save(torch.from_numpy(rng.randn(G.w_dim).astype(np.float32)), os.path.join(folder, "sefa", "upper_length.pt"))


def photos_and_masks(images_dir, masks_dir, num=12, seed=3):
    """Demo figures as PNG files, and a mask beside each: the pixels that differ from the background corner."""
    import zipfile
    os.makedirs(images_dir)
    os.makedirs(masks_dir)
    archive = make_figures(os.path.join(os.path.dirname(images_dir), f".{os.path.basename(images_dir)}.zip"),
                           num=num, seed=seed, height=64, width=32)
    with zipfile.ZipFile(archive) as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".png"))
        for idx, name in enumerate(names):
            with zf.open(name) as f:
                image = np.asarray(PIL.Image.open(f).convert("RGB"))
            PIL.Image.fromarray(image).save(os.path.join(images_dir, f"person{idx:03d}.png"))
            person = np.abs(image.astype(int) - image[0, 0].astype(int)).max(axis=2) > 12
            PIL.Image.fromarray((person * 255).astype(np.uint8)).save(os.path.join(masks_dir, f"person{idx:03d}.png"))
    os.remove(archive)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, compat_dir):
    """A folder laid out as the README's commands expect, and the environment they run in."""
    ws = str(tmp_path_factory.mktemp("readme"))
    for name in os.listdir(ROOT):  # the top-level scripts and scripts/, as in a checkout
        if name.endswith(".py") or name == "scripts":
            os.symlink(os.path.join(ROOT, name), os.path.join(ws, name))
    bin_dir = os.path.join(ws, ".bin")
    os.makedirs(bin_dir)
    with open(os.path.join(bin_dir, "python"), "w") as f:  # `python` is this interpreter (and its venv)
        f.write(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} \"$@\"\n")
    os.chmod(os.path.join(bin_dir, "python"), 0o755)
    network = os.path.join(compat_dir, "tiny_64x32.pkl")
    shutil.copyfile(network, os.path.join(ws, "full-512x256-with-D.pkl"))
    for name in ("SHHQ-1.0_sg2_512.pkl", "SHHQ-1.0_sg2_1024.pkl", "net.pkl"):
        save_g_ema_only(network, os.path.join(ws, name))
    for name in ("SHHQ-512x256.zip", "SHHQ-1024x512.zip"):
        make_figures(os.path.join(ws, name), num=32, height=64, width=32)
    photos_and_masks(os.path.join(ws, "my-photos"), os.path.join(ws, "my-masks"))
    stylegan_human_directions(os.path.join(ws, "latent_direction"), os.path.join(ws, "SHHQ-1.0_sg2_1024.pkl"))
    photos_and_masks(os.path.join(ws, "SHHQ", "images"), os.path.join(ws, "SHHQ", "masks"), seed=4)
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""), PYTHONPATH=ROOT,
               NET=os.path.join(ws, "net.pkl"), DNNLIB_CACHE_DIR=os.path.join(ws, ".cache"), CUDA_VISIBLE_DEVICES="",
               SG2_INCEPTION_DETECTOR=save_stand_in_detector(os.path.join(ws, ".inception.pt"), num_features=16),
               SG2_VGG16_DETECTOR=save_stand_in_detector(os.path.join(ws, ".vgg16.pt")),
               SG2_DINOV2_DETECTOR=save_stand_in_dinov2(os.path.join(ws, ".dinov2.pth")))
    return ws, env


def substituted(command, ws):
    for pattern, replacement in SUBSTITUTIONS:
        if re.search(pattern, command):
            text = replacement(ws) if callable(replacement) else replacement
            command = re.sub(pattern, lambda _m: text, command)
    return command


@pytest.mark.slow
@pytest.mark.parametrize("section", list(sections()))
def test_readme_section_runs(section, workspace):
    ws, env = workspace
    for command in sections()[section]:
        action = rule_for(command)
        if isinstance(action, Skip):
            continue
        line = " ".join([substituted(command, ws), *action.extra])
        proc = subprocess.run(["bash", "-c", line], cwd=ws, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=900)
        assert proc.returncode == 0 and "Traceback" not in proc.stdout, f"{line}\n{proc.stdout[-4000:]}"
