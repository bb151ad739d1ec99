"""The validation report: built from the evaluate stage's files, self-contained HTML, the measured numbers, flagged groups."""

import hashlib
import json
import re
from pathlib import Path

import mlflow
import pandas as pd
from omegaconf import OmegaConf

from crossmed.reporting.sections import UNRELIABLE_NOTE
from crossmed.stages import report as report_stage


def test_report_states_what_was_measured(trained_study, tmp_path):
    exp = Path(trained_study.paths.experiments)
    md_path, html_path = report_stage.run(trained_study)
    text, html = md_path.read_text(), html_path.read_text()
    metrics = json.loads(Path(trained_study.paths.metrics).read_text())
    auc = metrics["internal_test"]
    assert f"{auc['auc']:.3f} ({auc['auc_ci_low']:.3f} to {auc['auc_ci_high']:.3f})" in text
    for section in ("## Data", "## Model and training", "## Performance", "## External validation", "## Calibration",
                    "## Sites and subgroups", "## Explainability", "## Limitations", "## Checklist"):
        assert section in text
    assert "built-in synthetic cohort" in text, "the demo data are named as such"
    assert "Source: **synthetic** (DICOM files, one folder per site)" in text and "dicom_sites" not in text
    assert "Leakage check: nothing across splits" in text and "finding one stops the run" in text
    data_card = (Path(trained_study.paths.processed) / "data_card.md").read_text()
    assert "Source: DICOM files, one folder per site" in data_card and "Leakage check: nothing across splits" in data_card
    card = (Path(trained_study.paths.models) / "export" / "model_card.md").read_text()
    assert card.count("Preprocessing: ") == 1, "the model card states the preprocessing once"
    assert "Arithmetic: training native" in text, "an in-process training computes natively, and the report says so"
    assert "**Pointing game.**" in text and "| true positive |" in text, "saliency checked, 2 x 2 counts given"
    groups = pd.read_csv(exp / "evaluation" / "metrics_by_group.csv")
    unreliable = groups[~groups["reliable"].astype(bool)]
    assert len(unreliable) > 0, "the tiny study has subgroups too small for reliable intervals: the mark is exercised"
    assert "†" in text and UNRELIABLE_NOTE in text, "intervals that cannot be trusted are marked, and the mark explained"
    sources = re.findall(r'<img[^>]+src="([^"]+)"', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources), "one file that opens anywhere"
    assert html.count("<table>") >= 4 and "<h2>Performance</h2>" in html
    assert trained_study.study.name in html


def test_report_names_its_model_and_is_the_same_when_rerun(trained_study, tmp_path):
    run_id = json.loads(Path(trained_study.paths.training_run).read_text())["run_id"]
    first, _ = report_stage.run(OmegaConf.merge(trained_study, {"paths": {"reports": str(tmp_path / "a")}}))
    second, _ = report_stage.run(OmegaConf.merge(trained_study, {"paths": {"reports": str(tmp_path / "b")}}))
    assert first.read_text() == second.read_text(), "no wall-clock time: a rerun on the same inputs writes the same report"
    checkpoint = hashlib.sha256(Path(trained_study.paths.checkpoint).read_bytes()).hexdigest()
    text = first.read_text()
    assert f"SHA-256 `{checkpoint[:16]}" in text, "the model is named by content"
    assert run_id not in text, "no run ID: a fresh clone's run has another, and must write the same report"
    client = mlflow.MlflowClient(trained_study.mlflow.tracking_uri)
    assert client.get_run(run_id).data.tags["checkpoint.sha256"] == checkpoint, "the run is found by the checkpoint's hash"
