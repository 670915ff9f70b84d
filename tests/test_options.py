"""Typed training options: misspelt keys and wrong types are errors naming them; one name per option end to end."""
import json

import pytest
from click.testing import CliRunner

import dnnlib
from helpers_training import make_figures, tiny_options
from training import presets, training_loop
from training.options import TrainCommand, TrainingOptions


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    return make_figures(tmp_path_factory.mktemp("data") / "figures.zip", num=8)


@pytest.fixture(scope="module")
def options(figures):
    return presets.make_training_options(**tiny_options(figures))[0]


def test_misspelt_train_option_is_an_error_naming_it(figures):
    with pytest.raises(dnnlib.util.UserError, match=r"^train\.py options: unknown option 'kimgg'; did you mean "
                                                    r"'kimg'\?$"):
        presets.make_training_options(kimgg=1, **tiny_options(figures))
    with pytest.raises(dnnlib.util.UserError, match=r"unknown option 'device_type'; did you mean 'device'\?"):
        TrainCommand.from_dict(dict(data=figures, device_type="cpu"))
    with pytest.raises(dnnlib.util.UserError, match=r"^train\.py options: missing option\(s\) data$"):
        TrainCommand.from_dict(dict(kimg=1))


def test_misspelt_training_options_key_is_an_error_naming_it(options, tmp_path):
    values = options.to_dict()
    values["totl_kimg"] = values.pop("total_kimg")
    with pytest.raises(dnnlib.util.UserError, match=r"^training options: unknown option 'totl_kimg'; did you mean "
                                                    r"'total_kimg'\?$"):
        TrainingOptions.from_dict(values)
    with pytest.raises(dnnlib.util.UserError, match=r"unknown option 'totl_kimg'"):  # Before any work is done.
        training_loop.training_loop(values)
    path = tmp_path / "training_options.json"
    path.write_text(json.dumps(values))
    with pytest.raises(dnnlib.util.UserError, match=r"training_options\.json: unknown option 'totl_kimg'"):
        TrainingOptions.load(str(path))


def test_wrong_types_are_errors_naming_the_key(options):
    with pytest.raises(dnnlib.util.UserError, match=r"'batch_size' must be int, not '4'"):
        TrainingOptions.from_dict(dict(options.to_dict(), batch_size="4"))
    with pytest.raises(dnnlib.util.UserError, match=r"'ema_rampup' must be float or null, not True"):
        options.replace(ema_rampup=True)
    with pytest.raises(dnnlib.util.UserError, match=r"'mirror' must be bool"):
        TrainCommand(data="x", mirror="yes")


def test_options_file_round_trip(options, tmp_path):
    path = tmp_path / "training_options.json"
    path.write_text(options.to_json())
    loaded = TrainingOptions.load(str(path))
    assert loaded.to_dict() == json.loads(options.to_json())
    assert loaded.G_kwargs.synthesis_kwargs.channel_max == 32  # Nested options read as attributes.


def test_names_stay_the_same_from_the_command_line_to_the_loop(figures):
    from sg2_cli import train
    args = ["--outdir=unused", "--dry-run", f"--data={figures}", "--device=cpu", "--grid=2x4", "--workers=0",
            "--metrics=none", "--max-minutes=5"]
    result = CliRunner().invoke(train.main, args)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output.split("Training options:\n", 1)[1].split("\n\nDry run", 1)[0])
    assert printed["device"] == "cpu" and "device_type" not in printed
    assert printed["grid"] == [2, 4] and "grid_size" not in printed  # --grid=ROWSxCOLS, stored as [rows, cols].
    assert printed["max_minutes"] == 5
    assert set(printed) == set(TrainingOptions.field_names())


def test_metrics_are_handed_in_or_refused_before_any_work(figures, options, tmp_path):
    # training/ does not import the metrics: without the SnapshotMetrics that train.py hands in, metric names
    # cannot be checked and metrics cannot run; both are refused at once, naming what to pass.
    from metrics.snapshot_metrics import SnapshotMetrics
    with pytest.raises(ValueError, match="--metrics needs the metrics: pass snapshot_metrics="):
        presets.make_training_options(**tiny_options(figures, metrics="kid50k_full"))
    with pytest.raises(dnnlib.util.UserError, match="--metrics: unknown metric fid1k"):
        presets.make_training_options(snapshot_metrics=SnapshotMetrics(), **tiny_options(figures, metrics="fid1k"))
    listed = options.replace(metrics=["kid50k_full"], run_dir=str(tmp_path))
    with pytest.raises(ValueError, match="list the metrics kid50k_full but no snapshot_metrics"):
        training_loop.training_loop(listed)
    assert list(tmp_path.iterdir()) == []
