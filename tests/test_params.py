"""params.yaml agrees with conf/; bad config values stop a stage with the key named."""

import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from crossmed.errors import ConfigError
from crossmed.params_file import compose_params, params_differences


def test_committed_params_equal_default_composition():
    assert params_differences(REPO / "params.yaml", REPO / "conf") == []


def test_difference_is_reported_by_key(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["max_epochs"] = 999
    changed = tmp_path / "params.yaml"
    changed.write_text(yaml.safe_dump(params))
    assert params_differences(changed, REPO / "conf") == ["train.max_epochs"]


def test_experiment_and_model_overrides_compose():
    params = compose_params(REPO / "conf", overrides=["experiment=smoke", "model=densenet121", "train.max_epochs=3"])
    assert params["model"]["net"]["_target_"] == "monai.networks.nets.DenseNet121"
    assert params["train"]["max_epochs"] == 3
    assert params["data"]["synthetic"]["sites"]["KR"]["n_patients"] == 14
    assert params["mlflow"]["experiment_name"] == params["study"]["name"]  # interpolation resolved as DVC does


def _run_stage(*args, cwd=REPO):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_unknown_config_group_value_names_the_group():
    result = _run_stage("pipelines/train.py", "model=no_such_network")
    assert result.returncode != 0
    assert "model" in result.stderr and "no_such_network" in result.stderr


def test_unavailable_device_names_the_key(tmp_path):
    result = _run_stage(str(REPO / "pipelines/train.py"), "device=tpu", f"paths.processed={tmp_path}", cwd=tmp_path)
    assert result.returncode == 2
    assert "config key 'device'" in result.stderr


def test_missing_processed_data_names_the_file(tmp_path):
    result = _run_stage(str(REPO / "pipelines/train.py"), "device=cpu", f"paths.processed={tmp_path}", cwd=tmp_path)
    assert result.returncode == 2
    assert f"{tmp_path}/images.npy: missing" in result.stderr


@pytest.mark.parametrize("override,key,reason", [
    ("train.max_epochs=abc", "train.max_epochs", "could not be converted to Integer"),
    ("train.amp=maybe", "train.amp", "not a valid bool"),
    ("train={max_epoch:3}", "train.max_epoch", "not in 'TrainConfig'"),
])
def test_wrong_types_and_misspelt_keys_stop_at_composition(override, key, reason):
    with pytest.raises(ConfigError) as err:  # compose_params composes as `dvc exp run -S ...` does
        compose_params(REPO / "conf", overrides=[override])
    assert err.value.key == key and reason in err.value.reason


def test_composed_values_take_the_schema_types():
    params = compose_params(REPO / "conf", overrides=["train.learning_rate=1", "train.grad_clip_norm=2"])
    assert params["train"]["learning_rate"] == 1.0 and isinstance(params["train"]["learning_rate"], float)
    assert isinstance(params["train"]["grad_clip_norm"], float) and params["train"]["max_epochs"] == 30
