"""The data card: what went into a study, per split, site and label, as JSON and as Markdown."""

import numpy as np
import pandas as pd

from crossmed.data.task import Task

AGE_BANDS = [0, 18, 40, 65, 200]
AGE_LABELS = ["<18", "18-39", "40-64", ">=65"]


def age_bands(ages: pd.Series) -> pd.Series:
    """Return each age's band (<18, 18-39, 40-64, >=65), 'unknown' where the age is missing or not a number."""
    numbers = pd.to_numeric(ages, errors="coerce")
    return pd.cut(numbers, AGE_BANDS, right=False, labels=AGE_LABELS).astype(object).fillna("unknown")


def _label_counts(rows: pd.DataFrame, task: Task) -> dict:
    if task.multilabel:
        flags = np.array([[int(v) for v in label.split(";")] for label in rows["label"]]).reshape(len(rows), -1)
        return {name: int(flags[:, i].sum()) if len(rows) else 0 for i, name in enumerate(task.classes)}
    counts = rows["label"].astype(int).value_counts()
    return {name: int(counts.get(i, 0)) for i, name in enumerate(task.classes)}


def _distribution(values: pd.Series) -> dict:
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    if numbers.empty:
        return {"n": 0}
    q = numbers.quantile([0.25, 0.5, 0.75])
    return {"n": int(len(numbers)), "min": round(float(numbers.min()), 3), "q1": round(float(q[0.25]), 3),
            "median": round(float(q[0.5]), 3), "q3": round(float(q[0.75]), 3), "max": round(float(numbers.max()), 3)}


def group_summary(rows: pd.DataFrame, task: Task, subgroups: list[str]) -> dict:
    """Return counts, patients, images per patient, labels, subgroups, image sizes and intensities of `rows`."""
    per_patient = rows.groupby("patient_id").size()
    patients = rows.drop_duplicates("patient_id")
    summary = {"images": int(len(rows)), "patients": int(len(patients)),
               "images_per_patient": {"mean": round(float(per_patient.mean()), 3) if len(rows) else 0,
                                      "max": int(per_patient.max()) if len(rows) else 0},
               "labels": _label_counts(rows, task)}
    for column in subgroups:
        if column == "age":
            bands = age_bands(patients["age"])
            summary["age"] = {**_distribution(patients["age"]), "bands": {k: int(v) for k, v in bands.value_counts().sort_index().items()}}
        else:
            values = patients[column].replace("", "unknown")
            summary[column] = {str(k): int(v) for k, v in values.value_counts().sort_index().items()}
    summary["source_shape"] = {str(k): int(v) for k, v in rows["source_shape"].value_counts().sort_index().items()}
    summary["source_spacing_mm"] = {str(k) or "none": int(v) for k, v in rows["source_spacing_mm"].astype(str).value_counts().sort_index().items()}
    summary["source_intensity"] = {"mean": _distribution(rows["source_mean"]), "std": _distribution(rows["source_std"])}
    return summary


def data_card(manifest: pd.DataFrame, task: Task, source: dict, preprocessing: list[str], image_shape: list[int],
              subgroups: list[str], external_sites: list[str], leakage: dict) -> dict:
    """Return the data card: source, task, preprocessing, leakage check and the make-up of every split and site."""
    splits = {}
    for split, rows in manifest.groupby("split", sort=False):
        splits[split] = {"all": group_summary(rows, task, subgroups),
                         "sites": {site: group_summary(r, task, subgroups) for site, r in rows.groupby("site")}}
    order = {"train": 0, "val": 1, "test": 2, "external_test": 3}
    return {"source": source, "task": task.as_dict(), "images": int(len(manifest)),
            "patients": int((manifest["site"] + "/" + manifest["patient_id"]).nunique()),
            "sites": sorted(manifest["site"].unique()), "external_sites": list(external_sites),
            "image_shape": list(image_shape), "preprocessing": preprocessing, "subgroups": list(subgroups),
            "leakage_check": leakage, "splits": dict(sorted(splits.items(), key=lambda kv: order.get(kv[0], 9)))}


def _row(name: str, summary: dict) -> str:
    labels = ", ".join(f"{k} {v}" for k, v in summary["labels"].items())
    return (f"| {name} | {summary['images']} | {summary['patients']} | {summary['images_per_patient']['mean']} | "
            f"{labels} |")


LEAKAGE_POLICY = {"error": "finding one stops the run", "drop": "duplicates are dropped from the later split"}


def leakage_sentence(leakage: dict) -> str:
    """Return the leakage check's result in words: what was found across splits and what the policy does about it."""
    found = leakage["patients_in_two_splits"] + leakage["identical_images_across_splits"]
    dropped = len(leakage.get("dropped", []))
    return (f"Leakage check: {'nothing' if not found else 'found'} across splits — {leakage['patients_in_two_splits']} "
            f"patients in two splits, {leakage['identical_images_across_splits']} identical images"
            f"{f', {dropped} dropped' if dropped else ''} (data.leakage={leakage['policy']}: "
            f"{LEAKAGE_POLICY.get(leakage['policy'], leakage['policy'])}).")


def data_card_markdown(card: dict, data_format: str = "") -> str:
    """Return the data card as a Markdown document for reviewers (`data_format`: the source's words for its files)."""
    task = Task.from_dict(card["task"])
    source = card["source"]
    kind = data_format or source["type"]
    lines = [f"# Data card: {source.get('name', kind)}", "",
             f"- Source: {kind} ({', '.join(f'{k} = {v}' for k, v in source.items() if k != 'type')})",
             f"- Task: {task.type}; classes: {', '.join(task.classes)}",
             f"- Images: {card['images']} from {card['patients']} patients at sites {', '.join(card['sites'])}"
             f"{'; external: ' + ', '.join(card['external_sites']) if card['external_sites'] else ''}",
             f"- Processed image shape (C, spatial): {card['image_shape']}",
             f"- {leakage_sentence(card['leakage_check'])}", "",
             "## Preprocessing", "", *[f"{i}. {step}" for i, step in enumerate(card["preprocessing"], 1)], "",
             "## Splits", "", "| split / site | images | patients | images per patient | labels |", "|---|---|---|---|---|"]
    for split, parts in card["splits"].items():
        lines.append(_row(f"**{split}**", parts["all"]))
        lines += [_row(f"{split} / {site}", summary) for site, summary in parts["sites"].items()]
    for column in card["subgroups"]:
        lines += ["", f"## {column}", ""]
        for split, parts in card["splits"].items():
            values = parts["all"].get(column, {})
            shown = values.get("bands", values) if column == "age" else values
            lines.append(f"- {split}: " + (", ".join(f"{k} {v}" for k, v in shown.items()) or "none"))
    lines += ["", "## Source images", ""]
    for split, parts in card["splits"].items():
        summary = parts["all"]
        mean = summary["source_intensity"]["mean"]
        lines.append(f"- {split}: shapes {', '.join(f'{k} ({v})' for k, v in summary['source_shape'].items())}; "
                     f"spacing {', '.join(f'{k} ({v})' for k, v in summary['source_spacing_mm'].items())}; "
                     f"mean intensity median {mean.get('median', 'n/a')} (range {mean.get('min', 'n/a')}..{mean.get('max', 'n/a')})")
    return "\n".join(lines) + "\n"
