"""DeLong's paired AUC test against its definition, scikit-learn's AUC, and its false-positive rate under the null."""

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from crossmed.evaluation.delong import _structural_components, auc_variance, delong_test


def _psi(x, y):
    return (x > y) + 0.5 * (x == y)


def test_structural_components_equal_the_definition_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    scores = np.round(rng.random(60) + 0.3 * labels, 1)
    auc, v10, v01 = _structural_components(labels, scores)
    pos, neg = scores[labels == 1], scores[labels == 0]
    assert np.allclose(v10, [_psi(x, neg).mean() for x in pos]) and np.allclose(v01, [_psi(pos, y).mean() for y in neg])
    assert auc == pytest.approx(roc_auc_score(labels, scores))
    m, n = len(pos), len(neg)
    assert auc_variance(labels, scores) == pytest.approx(np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n)


def test_clearly_better_model_identical_models_and_null_rate():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 400)
    good = labels + rng.normal(0, 0.6, 400)
    weak = labels + rng.normal(0, 2.0, 400)
    result = delong_test(labels, good, weak)
    assert result["difference"] > 0 and result["p_value"] < 1e-4 and result["ci_low"] > 0
    same = delong_test(labels, good, good)
    assert same["difference"] == 0 and same["p_value"] == 1.0
    rejections = 0
    for seed in range(200):  # two equally good models with independent errors: about 5% of tests reject at 0.05
        r = np.random.default_rng(100 + seed)
        y = r.integers(0, 2, 150)
        rejections += delong_test(y, y + r.normal(0, 1, 150), y + r.normal(0, 1, 150))["p_value"] < 0.05
    assert 2 <= rejections <= 20


def test_needs_both_classes():
    with pytest.raises(ValueError, match="positive and negative"):
        delong_test([1, 1, 1], [0.2, 0.4, 0.6], [0.1, 0.3, 0.9])


def _evaluate_into(cfg, metrics: Path, evaluation: Path) -> None:
    """Point the evaluate stage's outputs (paths.metrics, paths.evaluation and the files inside it) elsewhere."""
    cfg.paths.metrics, cfg.paths.evaluation = str(metrics), str(evaluation)
    cfg.paths.operating_point, cfg.paths.all_metrics = str(evaluation / "operating_point.json"), str(evaluation / "metrics_all.json")


def test_evaluate_compares_with_another_run_and_refuses_other_cases(trained_study, tmp_path):
    import json
    import shutil
    from pathlib import Path

    import pandas as pd
    from omegaconf import OmegaConf

    from crossmed.errors import ConfigError, InputError
    from crossmed.stages import evaluate as evaluate_stage

    exp = Path(trained_study.paths.experiments)
    run_id = json.loads(Path(trained_study.paths.training_run).read_text())["run_id"]
    cfg = OmegaConf.merge(trained_study, {})  # a copy: the shared fixture stays as it is
    cfg.evaluate.compare_with = run_id  # the same model: no difference
    _evaluate_into(cfg, tmp_path / "metrics.json", tmp_path / "evaluation")
    metrics = evaluate_stage.run(cfg)
    assert metrics["internal_test_vs_reference"] == {"auc_difference": 0.0, "p_value": 1.0}
    comparison = json.loads((tmp_path / "evaluation" / "comparison.json").read_text())
    assert comparison["references"]["reference"]["sets"]["external_test"]["compared_with"] == f"MLflow run {run_id}"
    cfg.evaluate.compare_with = {"same_run": run_id, "same_folder": str(exp / "evaluation")}  # several, by label
    _evaluate_into(cfg, tmp_path / "m1.json", tmp_path / "e1")
    metrics = evaluate_stage.run(cfg)
    assert metrics["external_test_vs_same_run"] == metrics["external_test_vs_same_folder"] == {"auc_difference": 0.0, "p_value": 1.0}
    assert set(json.loads((tmp_path / "e1" / "comparison.json").read_text())["references"]) == {"same_run", "same_folder"}
    cfg.evaluate.compare_with = {"local-KR": run_id}
    with pytest.raises(ConfigError, match="label 'local-KR'"):
        evaluate_stage.run(cfg)
    other = tmp_path / "other"
    shutil.copytree(exp / "evaluation", other)
    table = pd.read_csv(other / "predictions_internal_test.csv")
    table.iloc[1:].to_csv(other / "predictions_internal_test.csv", index=False)  # one image fewer than our test set
    cfg.evaluate.compare_with = str(other)
    _evaluate_into(cfg, tmp_path / "m2.json", tmp_path / "e2")
    with pytest.raises(InputError, match="1 of .* internal_test images have no reference prediction"):
        evaluate_stage.run(cfg)
    assert not (tmp_path / "e2").exists() and not (tmp_path / "m2.json").exists(), "nothing half-written"
    assert not list(tmp_path.glob(".e2.*")), "no temporary folder left behind"
    cfg.evaluate.compare_with = "0123456789abcdef"
    with pytest.raises(ConfigError, match="evaluate.compare_with"):
        evaluate_stage.run(cfg)
