"""The tools that load a network, each with the smallest arguments that make it load one and finish quickly;
and running a tool in this process exactly as its entry point does (sg2_cli.runner.run).

Run as a script (`python tests/helpers_cli.py SPEC.json`), it runs every tool on every network form of the
spec in one fresh process and prints one JSON line per run: tests/test_cli_options.py does this with
HF_ENDPOINT pointing at a loopback stand-in of the Hub, which huggingface_hub reads when it is imported.
"""
import contextlib
import io
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tool_cases(inputs, out):
    """[(name, command, leading args, args after --network/--sha256)]; `inputs` holds the files the tools read
    (direction, target, vgg16, data, detector, busy_port), `out` a folder for what they write."""
    from sg2_cli import app, calc_metrics, convert, edit, gen_video, generate, projector, style_mixing
    cpu = "--device=cpu"
    return [
        ("generate", generate.main, [], ["--seeds=0", f"--outdir={out}/generate", cpu]),
        ("style_mixing", style_mixing.main, [], ["--rows=0", "--cols=1", f"--outdir={out}/mix", cpu]),
        ("gen_video", gen_video.main, [], ["--seeds=0-1", "--w-frames=1", f"--out={out}/video.gif", cpu]),
        ("edit sefa", edit.main, ["sefa"], ["--num=2", f"--out={out}/sefa.npz"]),
        ("edit apply", edit.main, ["apply"], [f"--direction={inputs['direction']}", "--seeds=0", "--strengths=0,1",
                                              f"--outdir={out}/edit", cpu]),
        ("projector", projector.main, [], [f"--target={inputs['target']}", "--num-steps=1", f"--vgg16={inputs['vgg16']}",
                                           f"--outdir={out}/proj", cpu]),
        ("calc_metrics", calc_metrics.main, [], ["--metrics=fid50k_full", f"--data={inputs['data']}", "--num-gen=32",
                                                 f"--detector={inputs['detector']}", cpu]),
        ("convert", convert.main, [], [f"--out={out}/net.safetensors"]),
        # The port is taken, so the app stops with an error once the network is loaded (it printed "Network:").
        ("app", app.main, [], [f"--port={inputs['busy_port']}", cpu]),
    ]


def run_tool(command, args):
    """(exit status, stdout, stderr) of the command run on `args` as its entry point runs it."""
    from sg2_cli import runner
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            runner.run(command, args, prog_name="tool")
            status = 0
        except SystemExit as exit_:
            status = exit_.code
    return status, stdout.getvalue(), stderr.getvalue()


def main(spec_path):
    """Every tool on every form of the spec: {forms: {form name: [--network=..., maybe --sha256=...]},
    inputs: {...}, out: folder}; one JSON line per run: tool, form, status, the last line of stderr, stdout, seconds."""
    with open(spec_path) as f:
        spec = json.load(f)
    for form, network_args in spec["forms"].items():
        for name, command, lead, rest in tool_cases(spec["inputs"], os.path.join(spec["out"], form)):
            start = time.time()
            status, stdout, stderr = run_tool(command, lead + network_args + rest)
            lines = stderr.strip().splitlines()
            print(json.dumps(dict(tool=name, form=form, status=status, last=lines[-1] if lines else "",
                                  traceback="Traceback" in stderr, stdout=stdout,
                                  seconds=round(time.time() - start, 1))), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main(sys.argv[1])
