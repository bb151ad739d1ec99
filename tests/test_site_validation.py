"""Validation at each site: `crossmed validate` on a site's own data writes aggregates only, equal to what the evaluate
stage measured on the same images; the report stage assembles site reports into one multi-site validation."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from conftest import REPO
from crossmed.data.task import Task
from crossmed.errors import InputError
from crossmed.evaluation.bootstrap import BootstrapSettings
from crossmed.evaluation.site_report import TooFewPatients, site_set_report
from crossmed.evaluation.site_report_file import read_site_report
from crossmed.inference.site_validation import SiteValidation, validate_site
from crossmed.reporting.multi_site import collect_site_reports, random_effects

CLI = [sys.executable, "-m", "crossmed.cli"]


def _settings(study) -> BootstrapSettings:
    b = study.evaluate.bootstrap
    return BootstrapSettings(b.resamples, b.seed, b.confidence, b.min_per_class)


def _export(study) -> Path:
    return Path(study.paths.models) / "export"


def _identifiers(study) -> set[str]:
    """Every per-case value a site must not send: IDs, source paths, content hashes and the evaluated probabilities."""
    manifest = pd.read_csv(Path(study.paths.processed) / "manifest.csv", dtype=str, keep_default_na=False)
    values = {v for column in ("patient_id", "image_id", "source_path", "content_hash") for v in manifest[column] if v}
    evaluation = Path(study.paths.evaluation)
    for path in evaluation.glob("predictions_*.csv"):
        values |= {f"{p:.6f}" for p in pd.read_csv(path)["probability"]}
    return values


def test_a_site_report_equals_the_evaluate_stage_on_the_same_images_and_holds_no_identifier(trained_study, tmp_path):
    out = tmp_path / "EE"
    report = validate_site(_export(trained_study), trained_study.paths.processed, "EE", out, SiteValidation(_settings(trained_study), min_patients=2))
    assert list(report["sets"]) == ["external_test"]
    evaluated = json.loads(Path(trained_study.paths.all_metrics).read_text())["external_test"]
    auc = report["sets"]["external_test"]["metrics"]["auc"]
    assert (auc["value"], auc["ci_low"], auc["ci_high"]) == pytest.approx(
        (evaluated["auc"], evaluated["auc_ci_low"], evaluated["auc_ci_high"]), abs=2e-4)
    counts = report["sets"]["external_test"]["at_operating_point"]
    table = pd.read_csv(Path(trained_study.paths.evaluation) / "predictions_external_test.csv")
    assert counts["true_positive"] == int(((table.actual == 1) & (table.predicted == 1)).sum())
    assert sum(counts[k] for k in ("true_positive", "false_positive", "false_negative", "true_negative")) == len(table)
    assert sorted(p.name for p in out.iterdir()) == ["site_report.json", "site_report.md"]
    written = "\n".join(p.read_text(encoding="utf-8") for p in out.iterdir())
    leaked = sorted(v for v in _identifiers(trained_study) if v in written)
    assert not leaked, f"per-case values in the site report: {leaked[:5]}"
    assert read_site_report(out / "site_report.json")["model"]["checkpoint_sha256"] == json.loads(
        (_export(trained_study) / "model" / "model.json").read_text())["training"]["checkpoint_sha256"]


def test_small_groups_fold_into_other_and_small_bins_merge_so_no_patient_stands_alone():
    rng = np.random.default_rng(0)
    labels = (np.arange(60) % 2).reshape(-1, 1).astype(np.int64)
    p = np.clip(labels[:, 0] * 0.5 + rng.random(60) * 0.5, 0, 1)
    probabilities = np.stack([1 - p, p], axis=1)
    rows = pd.DataFrame({"site": "EE", "patient_id": [f"P{i // 2}" for i in range(60)],  # 30 patients, 2 images each
                         "sex": ["F"] * 40 + ["M"] * 18 + ["X"] * 2,
                         "device": ["Vendor A"] * 52 + ["Jane Doe 1957-03-02"] * 8})
    task = Task.from_dict({"type": "binary", "classes": ["no", "yes"], "channels": 1, "spatial_dims": 2})
    settings = BootstrapSettings(50, 0, 0.95, 5)
    report = site_set_report(task, rows, labels, probabilities, 0.5, settings, ["sex", "device"], "site", min_patients=5)
    sexes = {r["subgroup"] for r in report["subgroups"] if r["group"] == "sex"}
    # X (1 patient) alone would be the whole minus F and M: M (9 patients) joins it as 'other'
    assert sexes == {"F", "other (small groups together)"}
    assert all(r["patients"] >= 5 for r in report["subgroups"])
    # device: 'Jane Doe ...' (4 patients) folds with the next smallest, leaving no group beside 'other': the column goes
    assert not [r for r in report["subgroups"] if r["group"] == "device"] and "Jane Doe" not in json.dumps(report)
    bins = report["calibration"]["bins"]
    assert sum(b["count"] for b in bins) == 60 and all(b["count"] >= 5 for b in bins)
    assert [b["lower"] for b in bins] == sorted(b["lower"] for b in bins) and bins[0]["lower"] == 0 and bins[-1]["upper"] == 1
    with pytest.raises(TooFewPatients, match="fewer than 40 patients"):
        site_set_report(task, rows, labels, probabilities, 0.5, settings, ["sex"], "site", min_patients=40)


def test_the_validate_command_writes_the_report_and_names_what_is_wrong(trained_study, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    ok = subprocess.run([*CLI, "validate", str(_export(trained_study)), trained_study.paths.processed, "--site", "KR",
                         "--out", str(tmp_path / "KR"), "--resamples", "50", "--min-patients", "2"], capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert list(json.loads(ok.stdout)["sets"]) == ["internal_test"]
    with pytest.raises(TooFewPatients, match="site KR: nothing to report"):  # every set too small: nothing written
        validate_site(_export(trained_study), trained_study.paths.processed, "KR", tmp_path / "small",
                      SiteValidation(_settings(trained_study), min_patients=50))
    assert not (tmp_path / "small").exists()
    with pytest.raises(InputError, match="must lie outside"):  # --out naming the data folder would replace it
        validate_site(_export(trained_study), trained_study.paths.processed, "KR", trained_study.paths.processed,
                      SiteValidation(_settings(trained_study), min_patients=2))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep")
    with pytest.raises(InputError, match="holds notes.txt"):
        validate_site(_export(trained_study), trained_study.paths.processed, "KR", tmp_path / "busy",
                      SiteValidation(_settings(trained_study), min_patients=2))
    assert (tmp_path / "KR" / "site_report.md").read_text(encoding="utf-8").startswith("# Site report: KR")
    wrong = subprocess.run([*CLI, "validate", str(_export(trained_study)), trained_study.paths.processed, "--site", "LV",
                            "--out", str(tmp_path / "LV")], capture_output=True, text=True, env=env, timeout=300)
    assert wrong.returncode == 2 and "manifest.csv" in wrong.stderr and "no images of site LV" in wrong.stderr
    assert not (tmp_path / "LV").exists()
    other = shutil.copytree(trained_study.paths.processed, tmp_path / "other")
    card = json.loads((other / "data_card.json").read_text())
    card["recipe"]["spacing_mm"] = card["recipe"]["spacing_mm"] * 2  # resampled differently from the model's recipe
    (other / "data_card.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="data_card.json.*recipe"):
        validate_site(_export(trained_study), other, "EE", tmp_path / "EE", SiteValidation(_settings(trained_study), min_patients=2))
    assert not (tmp_path / "EE").exists()


def test_random_effects_pools_two_sites_by_dersimonian_laird():
    result = random_effects([0.8, 0.9], [0.05, 0.05])
    # Q = 2 (df 1), tau^2 = (Q - df) / (sum w - sum w^2 / sum w) = 1 / 400, I^2 = 50%, pooled SE = sqrt(1 / 400)
    assert result["q"] == pytest.approx(2.0) and result["tau2"] == pytest.approx(0.0025) and result["i2"] == pytest.approx(0.5)
    assert result["pooled"] == pytest.approx(0.85) and result["ci_low"] == pytest.approx(0.85 - 1.959964 * 0.05, abs=1e-4)
    assert random_effects([0.8, 0.8], [0.05, 0.05])["tau2"] == 0 and random_effects([0.8], [0.05]) is None


def test_auc_pools_on_the_logit_scale_inside_0_and_1_and_each_site_counts_once():
    from crossmed.reporting.multi_site import _per_site, pooled_auc

    near_one = {"value": 0.97, "ci_low": 0.93, "ci_high": 0.995, "reliable": True}
    pooled, left_out = pooled_auc([("KR", near_one), ("KS", dict(near_one)),
                                   ("EE", {"value": 0.99, "ci_low": 0.96, "ci_high": 1.0, "reliable": True}),
                                   ("ET", {**near_one, "reliable": False})])
    assert left_out == ["EE (interval reaches 1)", "ET (interval unreliable)"] and pooled["sites"] == 2
    # Two equal sites: the pooled AUC is theirs, no heterogeneity, an interval 1/sqrt(2) of each site's on the logit
    # scale, and skewed as an AUC near 1 is (on the AUC scale an interval 0.97 +- 0.046 would pass 1).
    assert pooled["pooled"] == pytest.approx(0.97) and pooled["tau2"] == 0 and pooled["q"] == pytest.approx(0)
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    assert logit(pooled["ci_high"]) - logit(pooled["ci_low"]) == pytest.approx((logit(0.995) - logit(0.93)) / np.sqrt(2))
    assert pooled["ci_low"] < 0.97 < pooled["ci_high"] < 0.995 and pooled["ci_high"] - 0.97 < 0.97 - pooled["ci_low"]
    # A site reporting two sets enters the spread once, with its set of more patients.
    small, large = {"value": 0.7}, {"value": 0.9}
    assert _per_site([("KR", "internal_test", 12, small), ("KR", "external_test", 40, large), ("EE", "external_test", 9, small)]) == \
        [("EE", small), ("KR", large)]


def test_the_report_assembles_site_reports_and_keeps_out_those_of_another_model(trained_study, tmp_path):
    from crossmed.stages import report, validate_sites

    cfg = OmegaConf.merge(trained_study, {"paths": {"site_reports": str(tmp_path / "here"), "reports": str(tmp_path / "reports"),
                                                    "received_site_reports": str(tmp_path / "received")}})
    cfg.evaluate.site_validation.sites = ["KR"]
    validate_sites.run(cfg)
    received = tmp_path / "received" / "EE"
    validate_site(_export(trained_study), cfg.paths.processed, "EE", received, SiteValidation(_settings(trained_study), min_patients=2))
    md, _ = report.run(cfg)
    text = md.read_text(encoding="utf-8")
    section = text[text.index("## Validation at each site"):]
    section = section[:section.index("\n## ", 3)]
    assert "| KR | internal test |" in section and "| EE | external test |" in section
    assert "Between-site spread of ROC AUC" in section
    # The smoke study's sites have fewer than min_per_class cases of a class: their intervals are marked unreliable,
    # and a pooled estimate built on them is withheld rather than printed.
    assert "†" in section and ("No random-effects summary: fewer than two sites have a reliable interval inside (0, 1) "
                               "(left out: EE (interval unreliable), KR (interval unreliable)).") in section

    stale = read_site_report(received / "site_report.json")
    stale["model"]["checkpoint_sha256"] = "0" * 64
    (received / "site_report.json").write_text(json.dumps(stale))
    md, _ = report.run(cfg)
    section = md.read_text(encoding="utf-8").split("## Validation at each site")[1].split("\n## ")[0]
    assert "| EE |" not in section and "- EE: checkpoint SHA-256 `0000000000000000…`" in section

    shutil.copytree(tmp_path / "here" / "KR", tmp_path / "received" / "KR")
    with pytest.raises(InputError, match="site KR already has a report"):
        collect_site_reports(tmp_path / "here", tmp_path / "received")
    (tmp_path / "received" / "KR" / "site_report.json").write_text('{"format": "something else"}')
    with pytest.raises(InputError, match="not a crossmed site report"):
        collect_site_reports(tmp_path / "received")
    shutil.rmtree(tmp_path / "received" / "KR")
    for change, reason in ((lambda r: r.update(site="<img src=x>"), "not a site code"),
                           (lambda r: r["sets"].update({"<script>": r["sets"]["external_test"]}), "unknown set"),
                           (lambda r: r["sets"]["external_test"]["metrics"]["auc"].update(value=7.5), "0 <= ci_low <= value"),
                           (lambda r: r["sets"]["external_test"]["metrics"]["auc"].update(ci_low=float("nan")), "finite")):
        broken = json.loads(json.dumps(stale))
        change(broken)
        (received / "site_report.json").write_text(json.dumps(broken))
        with pytest.raises(InputError, match=reason):
            collect_site_reports(tmp_path / "received")
