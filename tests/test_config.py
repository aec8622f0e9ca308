"""Configs: inheritance, overrides, validation with errors that name the key."""

from pathlib import Path

import pytest
import yaml

from local.config import ConfigError, load_config, save_config

REPO = Path(__file__).resolve().parents[1]


def write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def test_every_shipped_config_is_valid():
    confs = sorted((REPO / "conf").rglob("*.yml"))
    assert confs, "no configs found"
    for conf in confs:
        full = load_config(conf)
        assert set(full) >= {"data", "filterbank", "masknet", "optim", "training"}


def test_base_inheritance_changes_only_what_the_child_sets(tmp_path):
    write(tmp_path / "base.yml", {"filterbank": {"n_filters": 256, "kernel_size": 40, "stride": 20},
                                  "masknet": {"n_blocks": 7, "mask_act": "softmax"}})
    (tmp_path / "sub").mkdir()
    child = write(tmp_path / "sub" / "child.yml", {"base": "../base.yml", "masknet": {"mask_act": "sigmoid"}})
    conf = load_config(child)
    assert conf["masknet"]["mask_act"] == "sigmoid"
    assert conf["masknet"]["n_blocks"] == 7
    assert conf["filterbank"]["kernel_size"] == 40


def test_inheritance_loop_is_an_error(tmp_path):
    write(tmp_path / "a.yml", {"base": "b.yml"})
    write(tmp_path / "b.yml", {"base": "a.yml"})
    with pytest.raises(ConfigError, match="loops"):
        load_config(tmp_path / "a.yml")


def test_overrides_parse_like_yaml(tmp_path):
    conf = load_config(write(tmp_path / "c.yml", {}),
                       ["optim.lr=5e-4", "filterbank.who_is_pinv=encoder", "masknet.causal=true",
                        "masknet.norm_type=cLN", "training.devices=2"])
    assert conf["optim"]["lr"] == 5e-4
    assert conf["filterbank"]["who_is_pinv"] == "encoder"
    assert conf["masknet"]["causal"] is True
    assert conf["training"]["devices"] == 2


@pytest.mark.parametrize("content,message", [
    ({"masknet": {"n_block": 3}}, "unknown key masknet.n_block.*n_blocks"),
    ({"mask": {}}, "unknown section 'mask'"),
    ({"optim": {"lr": "fast"}}, "optim.lr='fast' should be float"),
    ({"masknet": {"causal": True, "norm_type": "gLN"}}, "causal"),
    ({"data": {"sample_rate": 44100}}, "data.sample_rate"),
    ({"data": {"dm_speed_range": 0.7}}, r"data.dm_speed_range=0.7 must be in \[0, 0.5\)"),
    ({"data": {"dm_speed_range": -0.1}}, "data.dm_speed_range"),
    ({"data": {"cache_sources": True}}, "data.cache_sources .*data.dynamic_mixing=false"),
    ({"training": {"compile": "yes"}}, "training.compile='yes' should be bool"),
    ({"filterbank": {"who_is_pinv": "encoder", "n_filters": 8, "kernel_size": 16}}, "n_filters >= kernel_size"),
])
def test_bad_configs_name_the_problem(tmp_path, content, message):
    path = write(tmp_path / "bad.yml", content)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert "bad.yml" in str(info.value)


def test_bad_override_syntax(tmp_path):
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(write(tmp_path / "c.yml", {}), ["optim.lr"])


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yml"):
        load_config(tmp_path / "nope.yml")


def test_saved_config_reloads_identically(tmp_path):
    conf = load_config(REPO / "conf" / "demo.yml")
    save_config(conf, tmp_path / "conf.yml")
    assert load_config(tmp_path / "conf.yml") == conf


def test_lightning_arguments_keep_their_type(tmp_path):
    """limit_train_batches=250 means 250 batches; 250.0 would be read as a fraction by Lightning."""
    conf = load_config(write(tmp_path / "c.yml", {"training": {"limit_train_batches": 250, "devices": 2}}))
    assert conf["training"]["limit_train_batches"] == 250
    assert isinstance(conf["training"]["limit_train_batches"], int)
    conf = load_config(write(tmp_path / "d.yml", {"training": {"limit_train_batches": 0.5}}))
    assert conf["training"]["limit_train_batches"] == 0.5


def test_steps_per_epoch_uses_the_batch_limit():
    from local.train import steps_per_epoch

    conf = load_config(REPO / "conf" / "demo.yml")
    conf["training"]["limit_train_batches"] = 250
    assert steps_per_epoch(4000, conf) == 250
    conf["training"]["limit_train_batches"] = 0.5
    assert steps_per_epoch(4000, conf) == 4000 // conf["data"]["batch_size"] // 2


def test_yaml_floats_without_a_dot_are_floats(tmp_path):
    """YAML 1.1 reads 1e-3 as a string: it was refused in a file and accepted with --set."""
    path = tmp_path / "c.yml"
    path.write_text("optim:\n  lr: 1e-3\n")
    assert load_config(path)["optim"]["lr"] == 1e-3
    assert load_config(write(tmp_path / "d.yml", {}), ["optim.lr=1e-3"])["optim"]["lr"] == 1e-3


@pytest.mark.parametrize("override,message", [
    ("optim.lr=-1", r"optim.lr=-1.0 must be > 0"),
    ("optim.lr=0", r"optim.lr=0.0 must be > 0"),
    ("data.batch_size=0", r"data.batch_size=0 must be >= 1"),
    ("data.num_workers=-1", r"data.num_workers=-1 must be >= 0"),
    ("training.epochs=0", r"training.epochs=0 must be >= 1"),
    ("training.max_steps=0", r"training.max_steps=0 trains nothing"),
    ("training.limit_train_batches=0", r"training.limit_train_batches=0 must be"),
    ("scheduler.min_lr_ratio=2", r"scheduler.min_lr_ratio=2.0 must be >= 0 and <= 1"),
    ("scheduler.name=linera", r"scheduler.name must be plateau, cosine, linear or none"),
    ("masknet.n_blocks=0", r"masknet.n_blocks=0 must be >= 1"),
    ("evaluation.n_examples=-2", r"evaluation.n_examples=-2 must be >= 0"),
    ("training.accumulate_grad_batches=0", r"training.accumulate_grad_batches=0 must be >= 1"),
])
def test_out_of_range_values_are_refused_at_load(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path / "c.yml", {}), [override])


def test_base_must_name_a_file(tmp_path):
    """base: 5 was a traceback (a Path joined with an int)."""
    path = tmp_path / "c.yml"
    path.write_text("base: 5\n")
    with pytest.raises(ConfigError, match="base: 5 must be the path of another config file"):
        load_config(path)


def test_evaluation_settings_are_not_part_of_the_experiment(tmp_path):
    """Editing evaluation.* made the experiment folder refuse stages 2-4 as a 'different config'."""
    from local.config import identity_diffs
    from local.train import check_exp_dir

    conf = load_config(REPO / "tests" / "conf" / "micro.yml")
    check_exp_dir(tmp_path, conf)
    changed = load_config(REPO / "tests" / "conf" / "micro.yml",
                          ["evaluation.n_examples=0", "training.devices=1", "data.num_workers=1"])
    check_exp_dir(tmp_path, changed)  # accepted
    assert identity_diffs(conf, changed) == []
    other = load_config(REPO / "tests" / "conf" / "micro.yml", ["optim.lr=0.5"])
    with pytest.raises(ConfigError, match=r"optim.lr: 0.004 -> 0.5"):
        check_exp_dir(tmp_path, other)


def test_a_damaged_saved_config_is_one_clear_error(tmp_path):
    from local.config import read_experiment_config

    path = tmp_path / "conf.yml"
    path.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="(?s)conf.yml: not valid YAML.*damaged"):
        read_experiment_config(path)
