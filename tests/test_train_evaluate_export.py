"""Train, evaluate and export on the tiny study with a real MLflow store; metrics agree with scikit-learn."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from crossmed.evaluation.metrics import task_metrics, youden_threshold
from crossmed.model.networks import build_network, fit_to_task
from crossmed.data.task import Task
from crossmed.errors import ConfigError


def _auc_with_ties_broken(actual: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """Return the AUC with every positive-negative pair of equal scores counted as misordered, and as ordered."""
    positive, negative = score[actual == 1][:, None], score[actual == 0][None, :]
    pairs = positive.size * negative.size
    return float((positive > negative).sum() / pairs), float((positive >= negative).sum() / pairs)


def test_metrics_json_shape_and_values(trained_study):
    exp = Path(trained_study.paths.experiments)
    headline = json.loads(Path(trained_study.paths.metrics).read_text())
    metrics = json.loads(Path(trained_study.paths.all_metrics).read_text())
    assert list(headline) == ["internal_test", "external_test"] and set(metrics) == {"internal_test", "external_test", "external_gap"}
    assert all(headline[name][key] == metrics[name][key] for name in headline for key in headline[name] if not key.startswith("auc_gap"))
    assert headline["external_test"]["auc_gap"] == metrics["external_gap"]["auc"]
    threshold = json.loads(Path(trained_study.paths.operating_point).read_text())["threshold"]
    for name in ("internal_test", "external_test"):
        values = metrics[name]
        assert {"auc", "pr_auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "brier",
                "auc_ci_low", "auc_ci_high", "sensitivity_ci_low"} <= set(values)
        predictions = pd.read_csv(exp / "evaluation" / f"predictions_{name}.csv")
        # The CSV holds probabilities rounded to 6 decimals, which can tie two images that differ in full precision:
        # the reported AUC lies between this data's AUC with every tied pair counted wrong and counted right.
        low, high = _auc_with_ties_broken(predictions.actual.to_numpy(), predictions.probability.to_numpy())
        assert low - 1e-4 <= values["auc"] <= high + 1e-4, (low, values["auc"], high)
        assert roc_auc_score(predictions.actual, predictions.probability) == pytest.approx((low + high) / 2)
        assert values["auc_ci_low"] <= values["auc"] <= values["auc_ci_high"]
        assert (predictions.predicted == (predictions.probability >= threshold)).all()
        assert values["accuracy"] == pytest.approx((predictions.actual == predictions.predicted).mean(), abs=1e-4)
    gap = metrics["external_gap"]
    assert gap["auc"] == pytest.approx(metrics["internal_test"]["auc"] - metrics["external_test"]["auc"], abs=2e-4)
    groups = pd.read_csv(exp / "evaluation" / "metrics_by_group.csv")
    assert {"site", "sex", "age_band", "device"} <= set(groups["group"]) and set(groups.columns) >= {"ci_low", "ci_high", "reliable", "patients"}
    devices = set(groups[groups["group"] == "device"]["subgroup"])
    assert len(devices) == 2 and all(" " in d for d in devices), "manufacturer and model from each site's DICOM headers"
    assert set(groups[groups["group"] == "site"]["subgroup"]) == {"KR", "EE"} and set(groups[groups["group"] == "sex"]["subgroup"]) <= {"F", "M", "unknown"}
    internal_kr = groups[(groups["set"] == "internal_test") & (groups["group"] == "site") & (groups["metric"] == "auc")]
    assert internal_kr[["value", "ci_low", "ci_high"]].iloc[0].tolist() == pytest.approx(
        [metrics["internal_test"][k] for k in ("auc", "auc_ci_low", "auc_ci_high")]), "one internal site: the set's AUC and interval"
    bootstrap = json.loads((exp / "evaluation" / "bootstrap.json").read_text())
    assert bootstrap["unit"] == "patient" and bootstrap["resamples"] == trained_study.evaluate.bootstrap.resamples
    calibration = json.loads((exp / "evaluation" / "calibration.json").read_text())
    assert calibration["temperature_fitted_on"] == "val" and calibration["temperature"] > 0
    for name in ("internal_test", "external_test"):
        sets = calibration["sets"][name]
        assert sets["before"]["ece"] == metrics[name]["ece"] and "after_temperature_scaling" in sets
        bins = pd.read_csv(exp / "evaluation" / f"calibration_{name}.csv")
        assert bins["count"].sum() == len(pd.read_csv(exp / "evaluation" / f"predictions_{name}.csv"))
    for figure in ("roc.png", "pr.png", "calibration.png"):
        assert (exp / "evaluation" / figure).stat().st_size > 1000
    assert set(pd.read_csv(exp / "evaluation" / "predictions_external_test.csv").site) == {"EE"}
    assert (exp / "evaluation" / "roc.png").stat().st_size > 1000


def test_binary_metrics_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    probabilities = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.2, 0.9, 0.6])
    task = Task("binary", ("negative", "positive"), 1, 2)
    values = task_metrics(task, labels[:, None], np.column_stack([1 - probabilities, probabilities]), 0.5)
    assert values["auc"] == round(roc_auc_score(labels, probabilities), 4)
    assert (values["accuracy"], values["sensitivity"], values["specificity"], values["ppv"]) == (0.75, 0.75, 0.75, 0.75)
    assert youden_threshold(labels, probabilities) in set(probabilities)


def test_mlflow_run_holds_params_metrics_tags_and_artifacts(trained_study):
    reference = json.loads(Path(trained_study.paths.training_run).read_text())
    client = mlflow.MlflowClient(tracking_uri=reference["tracking_uri"])
    run = client.get_run(reference["run_id"])
    assert run.data.params["model.name"] == "resnet_small"
    assert run.data.params["train.max_epochs"] == str(trained_study.train.max_epochs)
    from crossmed.shareable_config import SITE_LOCAL

    # Where the site keeps raw data, keys and records is the site's own: not in the shared record.
    assert {run.data.params[k] for k in ("data.input", "deid.key_dir", "deid.site_records", "paths.raw")} == {SITE_LOCAL}
    assert {"internal_test/auc", "external_test/auc", "training/best_val_auc", "epoch/val_auc", "epoch/train_loss",
            "validation/operating_threshold", "export/parity_onnx"} <= set(run.data.metrics)
    sections = {key.rsplit("/", 1)[0] for key in run.data.metrics}
    assert all("/" in key for key in run.data.metrics), "every chart in a named group: none in 'Model metrics'"
    assert sorted(sections)[0] == "epoch", "the MLflow UI sorts groups by name: the per-epoch curves come first"
    history = client.get_metric_history(run.info.run_id, "epoch/val_auc")
    assert [m.step for m in history] == list(range(1, trained_study.train.max_epochs + 1))
    tags = run.data.tags
    assert tags["study.name"] == trained_study.study.name and tags["study.sites"] == "EE,KR"
    assert tags["data.source"] == "synthetic" and tags["data.format"] == "dicom_sites" and tags["study.task"] == "binary"
    assert max(len(key) for key in tags if not key.startswith("mlflow.")) <= 20, "tag keys the UI shows whole"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development", "opens on the runs table"
    assert trained_study.study.name in experiment.tags["mlflow.note.content"]
    assert [e.name for e in client.search_experiments()] == [experiment.name], "no empty Default experiment"
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.digest == tags["data.sha256"][:32] and dataset.dataset.name.endswith("processed")
    model = client.get_logged_model(tags["model.id"])
    assert model.source_run_id == run.info.run_id and model.tags["checkpoint.sha256"] == tags["checkpoint.sha256"]
    assert {m.key for m in model.metrics} >= {"training/best_val_auc", "internal_test/auc", "external_test/auc"}
    assert [o.model_id for o in run.outputs.model_outputs] == [model.model_id]
    assert tags["version.torch"].startswith("2.13.0") and "git.commit" in tags
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/model.ts", "model/model.onnx", "model/model.json", "model/model_card.md"} <= artifacts
    assert "mlflow_model/MLmodel" in {a.path for a in client.list_artifacts(run.info.run_id, "mlflow_model")}
    evaluation = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/roc.png" in evaluation and "evaluation/metrics.json" in evaluation
    assert {a.path for a in client.list_artifacts(run.info.run_id, "data")} == {"data/data_card.json", "data/data_card.md"}


def test_exported_model_matches_checkpoint(trained_study):
    models = Path(trained_study.paths.models)
    description = json.loads((models / "export" / "model" / "model.json").read_text())
    size = trained_study.data.image_size
    assert description["inputs"]["image"]["shape"] == [-1, 1, size, size]
    assert description["classes"] == list(trained_study.study.classes)
    assert description["operating_point"]["chosen_on"] == "val"
    exported = torch.jit.load(str(Path(trained_study.paths.export) / "model" / "model.ts"))
    checkpoint = torch.load(trained_study.paths.checkpoint, weights_only=True)
    net = build_network(checkpoint["model"]["net"])
    net.load_state_dict(checkpoint["state_dict"])
    images = torch.as_tensor(np.load(Path(trained_study.paths.processed) / "images.npy")[:8])
    with torch.no_grad():
        expected = torch.softmax(net.eval()(images), dim=1)
        got = exported(images)
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(got.sum(dim=1), torch.ones(len(images)), atol=1e-5)


def test_unknown_network_names_the_key():
    with pytest.raises(ConfigError, match="model.net"):
        build_network({"_target_": "monai.networks.nets.NoSuchNet"})


@pytest.mark.parametrize("model_file", sorted(p.name for p in (Path(__file__).parent.parent / "conf" / "model").glob("*.yaml")))
@pytest.mark.parametrize("shape,classes", [((1, 32, 32), 3), ((1, 32, 32, 32), 2)], ids=["2d", "3d"])
def test_every_configured_network_builds_and_classifies(model_file, shape, classes):
    import yaml

    cfg = yaml.safe_load((Path(__file__).parent.parent / "conf" / "model" / model_file).read_text())
    net = build_network(fit_to_task(cfg["net"], shape[0], classes, len(shape) - 1, shape[1:])).eval()
    with torch.no_grad():
        out = net(torch.zeros(2, *shape))
    assert out.shape == (2, classes), f"{model_file}: output {tuple(out.shape)}"


def test_gradcam_overlays_for_correct_and_wrong_cases(trained_study):
    from crossmed.model.saliency import chosen_cases

    folder = Path(trained_study.paths.experiments) / "evaluation" / "gradcam"
    cases = trained_study.evaluate.gradcam.cases
    for name in ("internal_test", "external_test"):
        table = pd.read_csv(Path(trained_study.paths.experiments) / "evaluation" / f"predictions_{name}.csv")
        chosen = chosen_cases(table, cases)
        assert (chosen[chosen.kind == "correct"].actual == chosen[chosen.kind == "correct"].predicted).all()
        assert (chosen[chosen.kind == "wrong"].actual != chosen[chosen.kind == "wrong"].predicted).all()
        files = sorted(p.name for p in folder.glob(f"{name}_*.png"))
        assert len(files) == len(chosen) and all((folder / f).stat().st_size > 2000 for f in files)
        expected_wrong = min(cases, int((table.actual != table.predicted).sum()))
        assert sum(f.startswith(f"{name}_wrong_") for f in files) == expected_wrong
