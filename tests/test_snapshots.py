"""A run folder's snapshots: names that never collide and sort as image counts, completeness, and --keep-snapshots
retention, which never leaves fewer than N complete snapshots, not even when the process is killed while it deletes."""
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap

import pytest

from helpers_training import ROOT, load, make_figures, snapshots, tiny_options, train_in_process
from training import snapshots as snapshot_files

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    return make_figures(tmp_path_factory.mktemp("data") / "figures.zip", num=32)


def fake_snapshot(folder, nimg, complete=True):
    """A small pickle under a snapshot's name; an incomplete one is cut before its STOP opcode."""
    data = pickle.dumps({"nimg": nimg}, protocol=4)
    path = os.path.join(folder, snapshot_files.snapshot_name(nimg))
    with open(path, "wb") as f:
        f.write(data if complete else data[:-1])
    return path


def test_names_carry_the_exact_image_count_and_sort_by_it():
    counts = [0, 4, 200, 999, 1000, 1008, 4000, 4032, 123456789]
    names = [snapshot_files.snapshot_name(n) for n in counts]
    assert names[:3] == ["network-snapshot-000000.pkl", "network-snapshot-000000_004.pkl",
                         "network-snapshot-000000_200.pkl"]
    assert snapshot_files.snapshot_name(400000) == "network-snapshot-000400.pkl"  # whole kimg: the classic name
    assert len(set(names)) == len(names) and sorted(names) == names  # plain string order is the image order
    assert [snapshot_files.snapshot_nimg(n) for n in names] == counts
    assert snapshot_files.grid_name(200) == "fakes000000_200.png"
    for other in ["network-snapshot-1.pkl.tmp", "network-snapshot-000001_20.pkl", "fakes000001.png", "x.pkl"]:
        assert snapshot_files.snapshot_nimg(other) is None


def test_only_whole_snapshots_count(tmp_path):
    whole = fake_snapshot(tmp_path, 4000)
    cut = fake_snapshot(tmp_path, 8000, complete=False)
    open(tmp_path / "network-snapshot-000012.pkl", "wb").close()   # empty
    (tmp_path / ".network-snapshot-000016.pkl.tmp-x").write_bytes(b"partial")  # a writer's temporary file
    assert snapshot_files.is_complete(whole) and not snapshot_files.is_complete(cut)
    assert snapshot_files.complete_snapshots(tmp_path) == [(4000, whole)]
    assert snapshot_files.latest_snapshot(tmp_path) == whole


def keep_by_definition(counts, keep, every, best):
    """The rule written out directly: the newest `keep`, the first at or after each multiple of `every` kimg, best."""
    kept = set(counts[-keep:]) | ({best} if best is not None else set())
    if every:
        multiples = {int(n // (every * 1000)) for n in counts}
        kept |= {min(n for n in counts if n >= m * every * 1000) for m in multiples}
    return [n for n in counts if n not in kept]


def test_retention_rule_against_its_definition():
    rng = random.Random(0)
    for _ in range(300):
        counts = sorted(rng.sample(range(0, 40000, 4), rng.randint(1, 25)))
        keep, every = rng.randint(1, 6), rng.choice([None, 0.5, 2, 7.5])
        best = rng.choice([None] + counts)
        listing = [(n, f"s{n}") for n in counts]
        deleted = snapshot_files.snapshots_to_delete(listing, keep, every, None if best is None else f"s{best}")
        assert deleted == [f"s{n}" for n in keep_by_definition(counts, keep, every, best)]
        assert len(counts) - len(deleted) >= min(keep, len(counts))


def test_best_snapshot_reads_the_metric_file(tmp_path):
    for nimg in (1000, 2000, 3000):
        fake_snapshot(tmp_path, nimg)
    lines = [dict(results=dict(fid50k_full=value), snapshot_pkl=snapshot_files.snapshot_name(nimg))
             for nimg, value in [(1000, 30.0), (2000, 12.5), (3000, 20.0), (5000, 1.0)]]  # kimg 5 was deleted
    with open(tmp_path / "metric-fid50k_full.jsonl", "w") as f:
        f.write("\n".join(json.dumps(line) for line in lines) + '\n{"results": {"fid50k_f')  # a line cut by a kill
    best = snapshot_files.best_snapshot(str(tmp_path), "fid50k_full", "fid50k_full", lower_is_better=True)
    assert best == os.path.join(tmp_path, snapshot_files.snapshot_name(2000))
    worst = snapshot_files.best_snapshot(str(tmp_path), "fid50k_full", "fid50k_full", lower_is_better=False)
    assert worst == os.path.join(tmp_path, snapshot_files.snapshot_name(1000))


def test_prune_keeps_what_the_rule_keeps_and_skips_incomplete_files(tmp_path):
    paths = [fake_snapshot(tmp_path, n) for n in range(1000, 9000, 1000)]
    cut = fake_snapshot(tmp_path, 9500, complete=False)  # never counted among the newest, never deleted
    removed = snapshot_files.prune(str(tmp_path), keep=2, keep_every_kimg=4, best=paths[1], log=lambda *a: None)
    left = [p for _n, p in snapshot_files.complete_snapshots(tmp_path)]
    # kimg 1 and 4 (the first of [0, 4) and [4, 8)), 2 (the best), 7 and 8 (the newest two; 8 is also first of [8, 12))
    assert left == [paths[0], paths[1], paths[3], paths[6], paths[7]]
    assert sorted(removed + left) == sorted(paths) and os.path.exists(cut)


KILLER = textwrap.dedent("""
    import os, signal, sys
    sys.path[:0] = [{root!r}]
    from training import snapshots
    calls = []
    def remove(path):
        calls.append(path)
        if len(calls) == {kill_at}:
            os.kill(os.getpid(), signal.SIGKILL)  # killed in the middle of the deletions
        os.remove(path)
    snapshots.prune({folder!r}, keep={keep}, remove=remove, log=lambda *args: None)
""")


@pytest.mark.parametrize("kill_at", [1, 3])
def test_killed_while_deleting_leaves_the_newest_snapshots(tmp_path, kill_at):
    paths = [fake_snapshot(tmp_path, n) for n in range(1000, 8000, 1000)]
    script = KILLER.format(root=ROOT, folder=str(tmp_path), keep=3, kill_at=kill_at)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = [p for _n, p in snapshot_files.complete_snapshots(tmp_path)]
    assert left[-3:] == paths[-3:] and len(left) == len(paths) - (kill_at - 1)


@pytest.mark.slow
def test_training_keeps_n_snapshots_and_continues_after_a_kill_in_retention(tmp_path, figures):
    # 8 snapshots of 4 images each; keep 2, and every 0.016 kimg (the first of 4 steps). A second run is killed
    # at its first deletion: its snapshots stay complete and --resume=auto continues from the newest.
    opts = tiny_options(figures, tick=0.004, snap=1, keep_snapshots=2, keep_every=0.016)
    status, run_dir = train_in_process(tmp_path / "runs", kimg=0.032, **opts)
    assert status == 0
    names = [os.path.basename(p) for p in snapshots(run_dir)]
    assert names == ["network-snapshot-000000_004.pkl", "network-snapshot-000000_016.pkl",
                     "network-snapshot-000000_028.pkl", "network-snapshot-000000_032.pkl"]
    assert all(snapshot_files.is_complete(p) for p in snapshots(run_dir))
    log = open(os.path.join(run_dir, "log.txt")).read()
    assert "Removed 1 older snapshot(s) (--keep-snapshots=2): network-snapshot-000000_008.pkl" in log

    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path[:0] = [{ROOT!r}, {os.path.join(ROOT, 'tests')!r}]
        import torch; torch.set_num_threads(1)
        from helpers_training import tiny_options, train_in_process
        real_remove = os.remove
        def remove(path):
            if "network-snapshot" in path:
                os.kill(os.getpid(), signal.SIGKILL)
            real_remove(path)
        os.remove = remove
        train_in_process({str(tmp_path / 'killed')!r}, kimg=0.032, **tiny_options({figures!r}, tick=0.004, snap=1,
                                                                                  keep_snapshots=2))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    (killed_dir,) = [os.path.join(tmp_path, "killed", n) for n in os.listdir(tmp_path / "killed")]
    left = snapshots(killed_dir)
    assert len(left) == 3 and all(snapshot_files.is_complete(p) for p in left)  # 4, 8 and 12 images
    assert load(left[-1])["progress"]["cur_nimg"] == 12
