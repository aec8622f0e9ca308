"""Training curves: SI-SNR per epoch from the CSV log, a PNG in the experiment and its export."""

import logging

import pytest

from local import curves
from tests.test_figures import png_size, write_log


def test_si_snr_is_minus_the_loss_per_epoch(tmp_path):
    log_csv = write_log(tmp_path / "exp" / "logs" / "metrics.csv", 3, resumed_epoch=1)
    got = curves.si_snr_per_epoch(log_csv)
    assert got["train"] == {1: 0.0, 2: 1.0, 3: 2.0}
    assert got["val"] == {1: 0.0, 2: 42.0, 3: 1.6}  # epoch 2 logged again by a resumed run: last value


def test_png_and_table_in_the_experiment_folder(tmp_path):
    exp = tmp_path / "exp"
    write_log(exp / "logs" / "metrics.csv", 4)
    ref = write_log(tmp_path / "ref" / "logs" / "metrics.csv", 6)
    out = curves.write_training_curves(exp, reference=ref)
    assert out == exp / "training_curves.png" and png_size(out) == (900, 500)
    lines = (exp / "training_curves.csv").read_text().splitlines()
    assert lines[0] == "epoch,train_si_snr,val_si_snr" and lines[2] == "2,1.0000,0.8000" and len(lines) == 5
    assert curves.main([str(exp), "--out", str(tmp_path / "copy.png")]) == 0
    assert (tmp_path / "copy.png").is_file()


def test_plot_failure_is_a_warning_not_an_error(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="local.curves"):
        assert curves.plot_after_training(tmp_path / "never_trained") is None
    assert "could not plot the training curves" in caplog.text
    empty = tmp_path / "empty" / "logs" / "metrics.csv"
    empty.parent.mkdir(parents=True)
    empty.write_text("epoch,step,loss_step\n0,1,-1.0\n")
    assert curves.plot_after_training(tmp_path / "empty") is None
    with pytest.raises(SystemExit, match="no per-epoch"):
        curves.main([str(tmp_path / "empty")])


def test_export_carries_the_curves(tmp_path):
    from local.export import main as export_main
    from tests.test_export import make_exp

    exp, _ = make_exp(tmp_path)
    write_log(exp / "logs" / "metrics.csv", 2)
    curves.write_training_curves(exp)
    assert export_main(["--exp-dir", str(exp)]) == 0
    assert png_size(exp / "export" / "training_curves.png") == (900, 500)
    assert (exp / "export" / "training_curves.csv").is_file()


def test_train_calls_the_plot_after_export_best():
    import inspect

    from local import train

    src = inspect.getsource(train.main)
    assert src.index("export_best(") < src.index("plot_after_training(exp_dir)")
