"""Progress that fits where it goes (dnnlib/progress.py): on a terminal a bar, in a pipe or a log file one plain line
per 5% or 30 s with rate and time left. calc_metrics.py, train.py and projector.py, read through a pipe, print a
number of progress lines that the rule bounds, however many steps they take."""
import io
import math
import os
import re
import subprocess
import sys
import time

import pytest
import tqdm

from dnnlib import progress
from helpers_training import ROOT, TINY_ARGS, make_figures
from metrics.stand_in_detector import save_stand_in_detector
from test_metrics_pipeline import write_zip

STAGE_BOUND = round(1 / progress.LINE_FRACTION) + 1  # a line per 5% step and the last one (plus one per 30 s)


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def report(total=None, unit="img", desc="stage"):
    clock, out = FakeClock(), io.StringIO()
    return progress.Lines(total=total, desc=desc, unit=unit, file=out, clock=clock), clock, out


def test_lines_every_five_percent_with_rate_and_time_left():
    lines, clock, out = report(total=10000)
    for _ in range(10000):  # 10,000 quick steps: 20 lines, not 10,000
        clock.now += 0.001
        lines.update(1)
    lines.close()
    text = out.getvalue().splitlines()
    assert len(text) == 20
    assert text[0] == "stage: 5% 500/10000 img, 1000 img/s, 0:10 left"
    assert text[-1] == "stage: 100% 10000/10000 img, 1000 img/s, done in 0:10"


def test_lines_every_thirty_seconds_when_steps_are_slow_and_at_the_end():
    lines, clock, out = report(total=1000)
    for _ in range(10):
        clock.now += 31  # 31 s per step, 0.1% each: the time rule writes each step
        lines.update(1)
    clock.now += 5
    lines.update(1)  # 5 s later and no new 5%: no line
    lines.close()  # the last state
    text = out.getvalue().splitlines()
    assert len(text) == 11 and text[-1] == "stage: 1% 11/1000 img, 0.0349 img/s, done in 5:15"  # 11 in 315 s


def test_unknown_total_and_bytes():
    lines, clock, out = report(unit="B", desc="x.pkl")
    for _ in range(90):
        clock.now += 1
        lines.update(1 << 20)
    lines.close()
    assert out.getvalue().splitlines() == ["x.pkl: 30.0 MiB, 1.0 MiB/s, 0:30 so far",
                                           "x.pkl: 60.0 MiB, 1.0 MiB/s, 1:00 so far",
                                           "x.pkl: 90.0 MiB, 1.0 MiB/s, 1:30 so far",
                                           "x.pkl: 90.0 MiB, 1.0 MiB/s, done in 1:30"]
    again, clock, out = report(total=2 << 20, unit="B", desc="y")
    again.update(1 << 20)
    again.reset()  # a download that starts again from byte 0
    clock.now += 2
    again.update(2 << 20)
    assert out.getvalue().splitlines()[-1] == "y: 100% 2.0 MiB of 2.0 MiB, 1.0 MiB/s, done in 0:02"


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_mode_follows_the_option_then_the_stream(monkeypatch):
    monkeypatch.setenv(progress.ENV_VAR, "auto")  # restored after the test
    assert progress.current_mode(Terminal()) == "bar" and progress.current_mode(io.StringIO()) == "lines"
    for mode, kind in [("bar", tqdm.tqdm), ("lines", progress.Lines)]:
        progress.set_mode(mode)
        with progress.bar(total=3, file=io.StringIO()) as made:
            assert progress.current_mode(io.StringIO()) == mode and isinstance(made, kind)
    progress.set_mode("none")
    silent = progress.bar(total=3)
    assert isinstance(silent, tqdm.tqdm) and silent.disable
    assert list(progress.track(range(3))) == [0, 1, 2]
    with pytest.raises(ValueError):
        progress.set_mode("fancy")


# ----------------------------------------------------------------------------
# The tools through a pipe.


def run_piped(args, timeout=600):
    """(output, seconds) of a tool run with stdout and stderr into one pipe, as a cluster log receives them."""
    env = {k: v for k, v in os.environ.items() if k != progress.ENV_VAR}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    start = time.time()
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return proc.stdout, time.time() - start


def stage_lines(output, desc):
    return [line for line in output.splitlines() if line.startswith(desc + ": ")]


def assert_bounded(output, seconds, desc, steps):
    """The stage's lines: within the rule's bound, far fewer than its steps, each with rate and time."""
    assert "\r" not in output  # no bar redraws in a pipe
    lines = stage_lines(output, desc)
    bound = STAGE_BOUND + math.ceil(seconds / progress.LINE_SECONDS)
    assert 1 <= len(lines) <= bound < steps, (desc, len(lines), bound, steps)
    for line in lines:
        assert re.search(r"\d+% \d+/\d+ \w+, [\d.e+]+ \w+/s, (\d+:\d\d left|done in \d+:\d\d)", line), line
    assert "done in" in lines[-1]


@pytest.mark.slow
def test_projector_through_a_pipe(tmp_path, compat_dir):
    vgg16 = save_stand_in_detector(str(tmp_path / "vgg16.pt"))
    import numpy as np
    import PIL.Image
    PIL.Image.fromarray(np.full([48, 40, 3], 200, np.uint8)).save(tmp_path / "photo.png")
    output, seconds = run_piped(["projector.py", f"--network={compat_dir}/tiny_64x32.pkl",
                                 f"--target={tmp_path}/photo.png", f"--vgg16={vgg16}", "--num-steps=150",
                                 "--space=wplus", "--pti-steps=60", f"--outdir={tmp_path}/proj", "--device=cpu"])
    for desc, steps in [("project w", 150), ("project wplus", 150), ("pivotal tuning", 60)]:
        assert_bounded(output, seconds, desc, steps)


@pytest.mark.slow
def test_calc_metrics_through_a_pipe(tmp_path, compat_dir):
    data = write_zip(tmp_path / "data.zip", 40)
    detector = save_stand_in_detector(str(tmp_path / "inception.pt"), num_features=16)
    output, seconds = run_piped(["calc_metrics.py", f"--network={compat_dir}/tiny_64x32.pkl", f"--data={data}",
                                 "--metrics=fid50k_full", "--max-gen=1600", f"--detector={detector}", "--device=cpu"])
    assert_bounded(output, seconds, "generated images", steps=1600 // 64)
    assert len(stage_lines(output, "real images")) == 1  # one batch: one line


@pytest.mark.slow
def test_train_through_a_pipe(tmp_path):
    # 100 steps in 4 ticks: one progress line per tick (with the time left), nothing per step.
    data = make_figures(tmp_path / "figures.zip", num=32)
    output, _ = run_piped(["train.py", f"--outdir={tmp_path}/runs", f"--data={data}", "--kimg=0.4", "--tick=0.1",
                           "--snap=100", *TINY_ARGS])
    ticks = [line for line in output.splitlines() if line.startswith("tick ")]
    assert len(ticks) == 5 and all(" left " in line and "sec/kimg" in line for line in ticks)  # tick 0, then 4
    assert "\r" not in output
