"""One command-line vocabulary: shared options defined once, booleans as flags, one-line errors with the usage /
failure exit codes, numbers checked, one overwrite policy, and the same --network/--sha256 forms in every tool."""
import ast
import dataclasses
import glob
import hashlib
import json
import os
import socket
import subprocess
import sys
import typing

import click
import numpy as np
import PIL.Image
import pytest

import legacy
from training.checkpoint import plain_weights
from helpers_cli import ROOT, run_tool, tool_cases
from helpers_http import serve
from metrics.stand_in_detector import save_stand_in_detector
from sg2_cli import (app, bg_white, calc_metrics, convert, dataset_tool, edit, gen_video, generate, options, projector,
                     style_mixing, train)
from sg2_cli.options import SharedOption
from test_download_hub import hub_route
from test_metrics_pipeline import write_zip
from training.options import TrainCommand

COMMANDS = {"generate": generate.main, "style_mixing": style_mixing.main, "gen_video": gen_video.main,
            "edit sefa": edit.sefa, "edit apply": edit.apply, "projector": projector.main, "app": app.main,
            "calc_metrics": calc_metrics.main, "convert": convert.main, "train": train.main,
            "dataset_tool": dataset_tool.main, "bg_white": bg_white.main}
# Spellings that mean different things in different tools, kept for the original command lines.
DIFFERENT_MEANINGS = {"--batch": "generate: images per forward pass; train: the total batch of a step",
                      "--target": "projector: the photo; train: ADA's target"}
# Flags spelt like a shared option, for another thing: the per-block table of benchmarks/cpu.py, and the
# stand-in writer's choice of the DINOv2 stand-in (`python -m metrics.stand_in_detector --dinov2 OUT`).
OTHER_THING = {(os.path.join("benchmarks", "cpu.py"), "--layers"),
               (os.path.join("metrics", "stand_in_detector.py"), "--dinov2")}


def _options(command):
    return [p for p in command.params if isinstance(p, click.Option)]


def _spellings(option):
    return [s for s in option.opts + option.secondary_opts if s.startswith("--")]


# ----------------------------------------------------------------------------
# Each option defined once.


def _declared_spellings(path):
    """The option spellings written as string literals in click.option(...) calls of a source file."""
    found = []
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "option":
            found += [arg.value for arg in node.args if isinstance(arg, ast.Constant) and str(arg.value).startswith("--")]
    return found


def test_shared_options_are_declared_only_in_the_shared_module():
    sources = [p for p in glob.glob(os.path.join(ROOT, "**", "*.py"), recursive=True)
               if f"{os.sep}tests{os.sep}" not in p and f"{os.sep}.venv{os.sep}" not in p]
    shared_path = os.path.join(ROOT, "sg2_cli", "options.py")
    by_file = {path: _declared_spellings(path) for path in sources if path != shared_path}
    for name in options.SPECS:
        found = [path for path, names in by_file.items() if name in names
                 and (os.path.relpath(path, ROOT), name) not in OTHER_THING]
        assert not found, (name, found)
    tools = [path for path in by_file if os.sep + "sg2_cli" + os.sep in path]
    for path in tools:  # and no spelling is written out in two of the installed tools
        others = {name for other in tools if other != path for name in by_file[other]}
        assert not set(by_file[path]) & others, (path, set(by_file[path]) & others)


def test_options_of_several_tools_come_from_one_definition():
    users = {}
    for tool, command in COMMANDS.items():
        for option in _options(command):
            for spelling in _spellings(option):
                users.setdefault(spelling, []).append((tool, option))
    shared = {name: uses for name, uses in users.items() if len(uses) > 1 and name not in DIFFERENT_MEANINGS}
    assert {"--network", "--sha256", "--device", "--dtype", "--seeds", "--outdir", "--trunc", "--noise-mode",
            "--verbose", "--force", "--out", "--seed", "--metrics", "--data"} <= set(shared)
    for name, uses in shared.items():
        assert all(isinstance(option, SharedOption) for _, option in uses), name
        assert len({type(option.type) for _, option in uses}) == 1, name
        base_help = {option.help.split(";")[0].split("  [")[0] for _, option in uses}
        assert len(base_help) == 1, (name, base_help)
    # --network always comes with --sha256.
    for tool, command in COMMANDS.items():
        names = {s for option in _options(command) for s in _spellings(option)}
        assert ("--network" in names) == ("--sha256" in names), tool


def test_every_boolean_option_is_a_flag_that_also_takes_a_value():
    for tool, command in COMMANDS.items():
        for option in _options(command):
            if option.type is click.BOOL:
                assert option.is_flag or option.flag_value is True, (tool, option.name)
    ctx = train.main.make_context("train", ["--outdir=o", "--data=d", "--mirror", "--cond=1", "--fp32=false"])
    assert (ctx.params["mirror"], ctx.params["cond"], ctx.params["fp32"]) == (True, True, False)
    ctx = projector.main.make_context("p", ["--network=n", "--target=t", "--outdir=o", "--save-video=true"])
    assert ctx.params["save_video"] is True
    assert projector.main.make_context("p", ["--network=n", "--target=t", "--outdir=o", "--save-video"]).params[
        "save_video"] is True
    assert "BOOLEAN" not in projector.main.get_help(click.Context(projector.main))


@pytest.mark.parametrize("command,new,old,args", [
    (gen_video.main, "--out", "--output", ["--network=n", "--seeds=0"]),
    (edit.sefa, "--out", "--output", ["--network=n"]),
    (dataset_tool.main, "--out", "--dest", ["--source=s"]),
])
def test_old_spellings_still_work_and_are_left_out_of_help(command, new, old, args):
    assert command.make_context("t", args + [f"{old}=x.mp4"]).params["out_path"] == "x.mp4"
    assert command.make_context("t", args + [f"{new}=y.mp4"]).params["out_path"] == "y.mp4"
    text = command.get_help(click.Context(command))
    assert new in text and old not in text


def test_train_options_are_the_fields_of_train_command():
    hints = typing.get_type_hints(TrainCommand)
    fields = {f.name: f for f in dataclasses.fields(TrainCommand) if f.metadata}
    params = {p.name: p for p in _options(train.main) if p.name not in ("outdir", "dry_run", "verbose", "help")}
    assert set(params) == set(fields) == set(TrainCommand.field_names()) - {"metric_kwargs"}
    for name, field in fields.items():
        if field.default is dataclasses.MISSING:
            assert params[name].required, name
        else:
            assert params[name].default == field.default, name  # each default is written once, in the field
        assert (params[name].type is click.BOOL) == (hints[name] in (bool, typing.Optional[bool])), name
    from training import presets
    text = train.main.get_help(click.Context(train.main))
    assert all(name in text for name in presets.CONFIG_SPECS)


# ----------------------------------------------------------------------------
# Errors: one line, exit 2 for usage errors, exit 1 for failures.


def run_one_line(command, args, status):
    code, _stdout, stderr = run_tool(command, args)
    lines = stderr.strip().splitlines()
    assert code == status and len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in stderr, stderr
    return lines[0]


NET = ["--network=net.pkl"]


@pytest.mark.parametrize("command,args,needle", [
    (generate.main, NET + ["--seeds=x", "--outdir=o"], "--seeds"),
    (generate.main, NET + ["--seeds=0", "--trunc=nan", "--outdir=o"], "--trunc"),
    (generate.main, NET + ["--seeds=0", "--trunc=1e30", "--outdir=o"], "--trunc"),
    (generate.main, NET + ["--seeds=0", "--sha256=abc", "--outdir=o"], "--sha256"),
    (generate.main, NET + ["--seeds=0", "--outdir=o", "--no-such-option"], "--no-such-option"),
    (style_mixing.main, NET + ["--rows=0", "--cols=1", "--trunc=nan", "--outdir=o"], "--trunc"),
    (gen_video.main, NET + ["--seeds=0", "--trunc=nan", "--out=v.mp4"], "--trunc"),
    (gen_video.main, NET + ["--seeds=0", "--trunc=-inf", "--out=v.mp4"], "--trunc"),
    (edit.main, ["apply"] + NET + ["--direction=d.npy", "--seeds=0", "--strengths=nan,inf", "--outdir=o"],
     "--strengths"),
    (edit.main, ["apply"] + NET + ["--direction=d.npy", "--seeds=0", "--trunc=nan", "--outdir=o"], "--trunc"),
    (projector.main, NET + ["--target=t.png", "--pixel-weight=nan", "--outdir=o"], "--pixel-weight"),
    (projector.main, NET + ["--target=t.png", "--seed=-1", "--outdir=o"], "--seed"),
    (train.main, ["--outdir=o", "--data=d", "--kimg=nan"], "--kimg"),
    (train.main, ["--outdir=o", "--data=d", "--gamma=inf"], "--gamma"),
    (train.main, ["--outdir=o", "--data=d", "--glr=nan"], "--glr"),
    (train.main, ["--outdir=o", "--data=d", "--p=nan"], "--p"),
    (bg_white.main, ["--images=i", "--masks=m", "--outdir=o", "--feather=nan"], "--feather"),
    (calc_metrics.main, NET + ["--dtype=fp16"], "--dtype"),
    (train.main, ["--outdir=o", "--data=d", "--device=gpu"], "--device"),
    (gen_video.main, NET + ["--seeds=0", "--out=v.mp4", "--fps=0"], "--fps"),
])
def test_bad_values_are_one_line_usage_errors(command, args, needle):
    assert needle in run_one_line(command, args, status=2)


def test_failures_are_one_line_errors_with_status_1(tmp_path):
    line = run_one_line(generate.main, [f"--network={tmp_path / 'missing.pkl'}", "--seeds=0", f"--outdir={tmp_path}"],
                        status=1)
    assert "missing.pkl" in line


def test_verbose_is_read_through_click(tmp_path, monkeypatch):
    monkeypatch.delenv("SG2_VERBOSE", raising=False)
    missing = f"--network={tmp_path / 'missing.pkl'}"
    status, _, stderr = run_tool(generate.main, [missing, "--seeds=0", f"--outdir={tmp_path}", "--verbose"])
    assert status == 1 and "Traceback" in stderr
    # "--verbose" as the value of another option is not the flag (it was, when sys.argv was searched for it).
    status, _, stderr = run_tool(generate.main, [missing, "--seeds=0", "--outdir", "--verbose"])
    assert status == 1 and "Traceback" not in stderr
    status, _, stderr = run_tool(edit.main, ["sefa", missing, f"--out={tmp_path / 's.npz'}", "--verbose"])
    assert status == 1 and "Traceback" in stderr  # a subcommand's --verbose too


# ----------------------------------------------------------------------------
# Output sizes and the overwrite policy.


@pytest.fixture(scope="module")
def tiny_net(tmp_path_factory):
    from helpers_latent import save_generator, tiny_generator
    return save_generator(tiny_generator(), tmp_path_factory.mktemp("net") / "tiny.pkl")


@pytest.mark.parametrize("tool,args,needle", [
    ("generate", ["--seeds=0", "--grid=100000x100000"], "--grid"),
    ("style_mixing", ["--rows=0-99999", "--cols=0-99999"], "--rows/--cols"),
    ("gen_video", ["--seeds=0-1", "--w-frames=100000", "--out={out}/v.gif"], "frames"),
    ("gen_video", ["--seeds=0", "--grid=1000x1000", "--out={out}/v.gif"], "pixels"),
])
def test_output_sizes_are_bounded(tiny_net, tmp_path, tool, args, needle):
    args = [arg.format(out=tmp_path) for arg in args]
    outdir = [] if any(a.startswith("--out=") for a in args) else [f"--outdir={tmp_path / 'o'}"]
    line = run_one_line(COMMANDS[tool], [f"--network={tiny_net}", "--device=cpu", *args, *outdir], status=1)
    assert needle in line
    assert os.listdir(tmp_path) == []  # refused before anything was written


def test_existing_outputs_are_replaced_only_with_force(tiny_net, tmp_path):
    args = [f"--network={tiny_net}", "--seeds=0-1", f"--outdir={tmp_path}", "--device=cpu"]
    assert run_tool(generate.main, args)[0] == 0
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    (tmp_path / "seed0001.png").write_bytes(b"mine")
    line = run_one_line(generate.main, args + ["--trunc=0.5"], status=1)
    assert "seed0000.png: already exists (2 outputs in all)" in line and "--force" in line
    assert (tmp_path / "seed0001.png").read_bytes() == b"mine"  # nothing was written
    assert run_tool(generate.main, args + ["--force"])[0] == 0
    assert {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)} == before

    out = tmp_path / "net.safetensors"
    assert run_tool(convert.main, [f"--network={tiny_net}", f"--out={out}"])[0] == 0
    assert "--force" in run_one_line(convert.main, [f"--network={tiny_net}", f"--out={out}"], status=1)
    assert run_tool(convert.main, [f"--network={tiny_net}", f"--out={out}", "--force"])[0] == 0


def test_dataset_tool_replaces_a_zip_with_force_but_never_a_folder(tmp_path):
    from helpers import write_image_folder
    rng = np.random.RandomState(0)
    src = write_image_folder(str(tmp_path / "src"), {f"{i}.png": rng.randint(0, 255, (16, 8, 3), np.uint8)
                                                     for i in range(3)})
    dest = tmp_path / "data.zip"
    dest.write_bytes(b"older")
    assert "--force" in run_one_line(dataset_tool.main, [f"--source={src}", f"--out={dest}"], status=1)
    assert dest.read_bytes() == b"older"
    assert run_tool(dataset_tool.main, [f"--source={src}", f"--out={dest}", "--force"])[0] == 0
    assert dataset_tool.convert_dataset(src, str(tmp_path / "folder"), progress=False) == 3
    line = run_one_line(dataset_tool.main, [f"--source={src}", f"--out={tmp_path / 'folder'}", "--force"], status=1)
    assert "is a folder" in line


# ----------------------------------------------------------------------------
# --network / --sha256: the same forms in every tool that loads a network.


@pytest.fixture(scope="module")
def tool_inputs(tmp_path_factory, compat_dir):
    root = tmp_path_factory.mktemp("tool_inputs")
    np.save(root / "direction.npy", np.random.RandomState(0).randn(512).astype(np.float32))  # w_dim of tiny_64x32
    PIL.Image.fromarray(np.random.RandomState(1).randint(0, 255, (40, 24, 3), np.uint8)).save(root / "photo.png")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        yield dict(direction=str(root / "direction.npy"), target=str(root / "photo.png"),
                   vgg16=save_stand_in_detector(str(root / "vgg16.pt")),
                   detector=save_stand_in_detector(str(root / "inception.pt"), num_features=16),
                   data=write_zip(root / "data.zip", 40), busy_port=busy.getsockname()[1],
                   network=os.path.join(compat_dir, "tiny_64x32.pkl"), root=str(root))


def test_a_wrong_sha256_is_refused_the_same_way_by_every_tool(tool_inputs, tmp_path):
    wrong = "0" * 64
    lines = set()
    for name, command, lead, rest in tool_cases(tool_inputs, str(tmp_path)):
        lines.add(run_one_line(command, lead + [f"--network={tool_inputs['network']}", f"--sha256={wrong}"] + rest,
                               status=1))
    assert len(lines) == 1, lines
    assert f"expected {wrong}" in lines.pop()
    assert not os.listdir(tmp_path)  # refused before anything was written


@pytest.mark.slow
def test_every_tool_accepts_the_same_network_forms(tool_inputs, tmp_path):
    pytest.importorskip("huggingface_hub")
    pytest.importorskip("gradio")
    network = tool_inputs["network"]
    body = open(network, "rb").read()
    digest = hashlib.sha256(body).hexdigest()
    safetensors = str(tmp_path / "tiny.safetensors")
    with open(network, "rb") as f:
        plain_weights.export_safetensors(legacy.load_network_pkl(f), safetensors)
    routes = {"/files/tiny.pkl": hub_route(body), "/owner/repo/resolve/main/tiny.pkl": hub_route(body)}
    # The server lives as long as the tools may take (serve's default, 120 s, ends it mid-run on a busy machine:
    # the url and hub forms then wait on a listening socket nobody answers, a minute a request).
    with serve(routes, lifetime=900) as server:
        forms = {"path": [f"--network={network}"], "safetensors": [f"--network={safetensors}"],
                 "url": [f"--network={server.base_url}/files/tiny.pkl#sha256={digest}"],
                 "hub": ["--network=hf://owner/repo/tiny.pkl", f"--sha256={digest}"]}
        spec = tmp_path / "spec.json"
        spec.write_text(json.dumps(dict(forms=forms, inputs=tool_inputs, out=str(tmp_path / "out"))))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "SG2_")) and
               "proxy" not in k.lower()}
        env.update(HF_ENDPOINT=server.base_url, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1",
                   HF_HUB_DISABLE_PROGRESS_BARS="1", DNNLIB_CACHE_DIR=str(tmp_path / "cache"), no_proxy="127.0.0.1",
                   PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]), CUDA_VISIBLE_DEVICES="",
                   GRADIO_ANALYTICS_ENABLED="False")
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "helpers_cli.py"), str(spec)], env=env,
                              cwd=str(tmp_path), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    print("\n".join(f"{r['form']:12s} {r['tool']:14s} {r['seconds']:5.1f} s" for r in runs))
    assert len(runs) == len(forms) * 9
    for run in runs:
        assert not run["traceback"], run
        if run["tool"] == "app":  # loaded the network, then could not serve on the busy port
            assert run["status"] == 1 and "Network:" in run["stdout"] and "--host/--port" in run["last"], run
        else:
            assert run["status"] == 0, run
