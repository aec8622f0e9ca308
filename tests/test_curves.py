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
    write_log(tmp_path / "ref" / "logs" / "metrics.csv", 6)
    ref = curves.write_training_curves(tmp_path / "ref").with_name(curves.CSV_NAME)  # another run's table
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


def _plotted_lines(monkeypatch, *args, **kwargs):
    """{label: (epochs, values)} of the figure plot_si_snr_curves draws."""
    from local import figures

    drawn = {}
    real = figures._save

    def keep(fig, path):
        for line in fig.axes[0].get_lines():
            drawn[line.get_label()] = (list(line.get_xdata()), list(line.get_ydata()))
        return real(fig, path)

    monkeypatch.setattr(figures, "_save", keep)
    curves.plot_si_snr_curves(*args, **kwargs)
    return drawn


def test_the_committed_reference_table_is_drawn(tmp_path, monkeypatch):
    """The README's `python -m local.curves EXP --reference docs/demo_training_curves.csv`."""
    from tests.test_evaluate import REPO

    reference = REPO / "docs" / "demo_training_curves.csv"
    table = curves.read_curves_table(reference)
    assert table["train"][1] == 0.2306 and table["val"][1] == 2.2070 and len(table["val"]) >= 9
    log_csv = write_log(tmp_path / "exp" / "logs" / "metrics.csv", 3)
    drawn = _plotted_lines(monkeypatch, log_csv, tmp_path / "exp" / "c.png", reference=reference)
    epochs = sorted(table["train"])
    assert drawn["reference (training)"] == (epochs, [table["train"][e] for e in epochs])
    assert drawn["reference (validation)"][1][0] == 2.2070
    # what write_training_curves writes is what the reference reader reads: one format
    written = tmp_path / "exp" / curves.CSV_NAME
    assert curves.read_curves_table(written) == curves.si_snr_per_epoch(log_csv)
    assert curves.main([str(tmp_path / "exp"), "--reference", str(reference)]) == 0


def test_a_reference_of_another_format_is_one_clear_line(tmp_path):
    log_csv = write_log(tmp_path / "exp" / "logs" / "metrics.csv", 3)
    with pytest.raises(SystemExit) as err:  # a Lightning log instead of a training_curves.csv
        curves.main([str(tmp_path / "exp"), "--reference", str(log_csv)])
    msg = str(err.value)
    assert msg == (f"error: {log_csv}: not a training_curves.csv (expected the columns "
                   "epoch,train_si_snr,val_si_snr, as local.curves writes next to its PNG)")
    with pytest.raises(SystemExit, match="--reference .*missing.csv not found"):
        curves.main([str(tmp_path / "exp"), "--reference", str(tmp_path / "missing.csv")])
