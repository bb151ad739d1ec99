"""Centralised vs federated vs each site alone (FLamby's protocol: every model scored on the same test sets), and the
cost of a federated round with more sites; prints JSON.

`comparison` (default): the three-site study (experiment=three_site: KR and KS train, EE is external) is built once
under a temporary folder; then, with the same seed, network and total epochs (rounds x local epochs = max_epochs):
centralised training on KR+KS, FedAvg across KR and KS, and each site alone (a one-site federation, so the data,
split and schedule are the same). Each is evaluated on the internal test (KR and KS patients) and the external site
EE with patient-bootstrap intervals, and the federated model is compared with each other model by DeLong's paired
test. Targets (issue 18): federated internal AUC within 0.02 of centralised; federated above each local-only model
on the external site.

`rounds`: one-round federations of smoke-sized data with 2 and 4 training sites: bytes sent and received per round and
seconds per round.

Run: `.venv/bin/python benchmarks/federated.py [--epochs 12 --local-epochs 3]` (~15 min on 2 CPU cores) and
`.venv/bin/python benchmarks/federated.py rounds` (~4 min).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parent.parent
HEADLINE = ("auc", "sensitivity", "specificity")


def _config(root: Path, run: str, overrides: list[str], extra: dict | None = None) -> Path:
    """Write the composed config of one run (its own models/ and experiments/, the shared data; `extra` merged in) and
    return its path."""
    from crossmed.params_file import compose_params
    from crossmed.study_paths import folder_overrides

    cfg = OmegaConf.create(compose_params(REPO / "conf", overrides=[*folder_overrides(root / "data"), *overrides,
                                                                    *folder_overrides(root / run, ("models", "experiments"))]))
    cfg = OmegaConf.merge(cfg, extra or {})
    cfg.mlflow.tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    (root / run).mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, root / run / "config.yaml")
    return root / run / "config.yaml"


def _stage(name: str, config: Path) -> float:
    """Run one stage in its own process (as DVC would); return its wall time; exit with its log when it fails."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "crossmed.stages", name, str(config)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    if done.returncode != 0:
        sys.exit(f"{name} failed ({config}):\n{done.stderr[-4000:]}")
    print(f"[federated benchmark] {name} {config.parent.name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return time.perf_counter() - started


def _metrics(folder: Path) -> dict:
    """Return the headline test metrics with intervals of one evaluated run."""
    metrics = json.loads((folder / "experiments" / "metrics.json").read_text())
    return {name: {m: [values[m], values[f"{m}_ci_low"], values[f"{m}_ci_high"]] for m in HEADLINE}
            for name, values in metrics.items() if name in ("internal_test", "external_test")}


def _delong(run: Path) -> dict:
    """Return the DeLong tests the evaluate stage wrote for `run` against each other model, per test set."""
    comparison = json.loads((run / "experiments" / "evaluation" / "comparison.json").read_text())
    return {label: {name: {k: round(float(r[k]), 4) for k in ("difference", "ci_low", "ci_high", "p_value")}
                    for name, r in part["sets"].items()} for label, part in comparison["references"].items()}


def _rounds(folder: Path) -> list[dict]:
    """Return the bytes and seconds of each round of a federated run (the coordinator's progress file)."""
    progress = json.loads((folder / "models" / "federation" / "coordinator" / "progress.json").read_text())
    return [{k: r[k] for k in ("round", "bytes_sent", "bytes_received", "seconds")} for r in progress["history"]]


def comparison(root: Path, epochs: int, local_epochs: int, keep: str | None = None) -> dict:
    """Build the three-site study, train the four models, evaluate and compare them."""
    if epochs % local_epochs:
        sys.exit("--epochs must be a multiple of --local-epochs (matched total training)")
    common = ["experiment=three_site", "evaluate.gradcam.cases=0"]
    federated = ["train=federated", f"train.federated.rounds={epochs // local_epochs}",
                 f"train.federated.local_epochs={local_epochs}"]
    others = {"centralised": [f"train.max_epochs={epochs}"], "local_KR": [*federated, "train.federated.sites=[KR]"],
              "local_KS": [*federated, "train.federated.sites=[KS]"]}
    compare = "evaluate.compare_with={" + ",".join(f"{run}:'{root / run / 'experiments' / 'evaluation'}'" for run in others) + "}"
    runs = {**others, "federated": [*federated, compare]}  # evaluated last: DeLong against each of the others
    seconds = {"data": sum(_stage(s, _config(root, "centralised", [*common, *runs["centralised"]]))
                           for s in ("synthesize", "deidentify", "preprocess"))}
    for run, overrides in runs.items():
        config = _config(root, run, [*common, *overrides])
        seconds[run] = _stage("train", config)
        _stage("evaluate", config)
    _stage("report", config)  # the federated model's validation report, with the comparison table
    if keep:
        shutil.copytree(root / "federated" / "experiments", Path(keep), dirs_exist_ok=True)
    card = json.loads((root / "data" / "processed" / "data_card.json").read_text())
    result = {"study": "experiment=three_site (KR, KS train; EE external)", "total_epochs": epochs,
              "federated": f"{epochs // local_epochs} rounds x {local_epochs} local epochs, FedAvg",
              "test_sets": {name: {"images": part["all"]["images"], "patients": part["all"]["patients"]}
                            for name, part in card["splits"].items() if name in ("test", "external_test")},
              "metrics": {run: _metrics(root / run) for run in runs},
              "delong_federated_vs": _delong(root / "federated"),
              "train_seconds": {k: round(v, 1) for k, v in seconds.items()},
              "federated_rounds": _rounds(root / "federated")}
    fed, central = result["metrics"]["federated"], result["metrics"]["centralised"]
    result["targets"] = {
        "internal_auc_gap_to_centralised": round(central["internal_test"]["auc"][0] - fed["internal_test"]["auc"][0], 4),
        "within_0.02": abs(central["internal_test"]["auc"][0] - fed["internal_test"]["auc"][0]) <= 0.02,
        "external_auc_above_each_local": all(fed["external_test"]["auc"][0] > result["metrics"][r]["external_test"]["auc"][0]
                                             for r in ("local_KR", "local_KS"))}
    return result


def rounds(root: Path) -> dict:
    """Run one-round federations with 2 and 4 training sites on smoke-sized data; return bytes and seconds per round."""
    small = ["experiment=three_site", "study.external_sites=[]", "study.sites=[KR,KS,EE,ET]", "data.image_size=32",
             "data.spacing_mm=2.0", *[f"data.synthetic.sites.{site}.n_patients={n}" for site, n in (("KR", 14), ("KS", 14), ("EE", 8))]]
    tallinn = {"data": {"synthetic": {"sites": {"ET": {  # a fourth site, only here
        "institution": "Tallinna Keskhaigla", "address": "Ravi 18, 10138 Tallinn", "language": "et", "character_set": "ISO_IR 100",
        "n_patients": 10, "rows": 80, "pixel_spacing_mm": 0.8, "contrast": 0.9, "noise_sd": 0.5, "blur_px": 0.5,
        "rescale_slope": 1.0, "rescale_intercept": 0.0, "stored_scale": 100.0, "manufacturer": "Baltic Imaging", "model": "BX-3"}}}}}
    for stage in ("synthesize", "deidentify", "preprocess"):
        _stage(stage, _config(root, "two_sites", small, tallinn))
    out = {}
    for run, sites in (("two_sites", "[KR,EE]"), ("four_sites", "[KR,KS,EE,ET]")):
        config = _config(root, run, [*small, "train=federated", "train.federated.rounds=2", "train.federated.local_epochs=1",
                                     f"train.federated.sites={sites}"], tallinn)
        total = _stage("train", config)
        out[run] = {"sites": sites, "stage_seconds": round(total, 1), "rounds": _rounds(root / run)}
    return out


def main() -> None:
    """Run the chosen benchmark and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="?", default="comparison", choices=["comparison", "rounds"])
    parser.add_argument("--epochs", type=int, default=12, help="total epochs of every model (default 12)")
    parser.add_argument("--local-epochs", type=int, default=3, help="local epochs per federated round (default 3)")
    parser.add_argument("--keep", metavar="DIR", help="copy the federated run's experiments/ (validation report with the "
                                                      "comparison table, evaluation) here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crossmed-federated-") as tmp:
        result = (comparison(Path(tmp), args.epochs, args.local_epochs, args.keep) if args.which == "comparison"
                  else rounds(Path(tmp)))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
