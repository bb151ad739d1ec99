"""The PS3.15 Annex E confidentiality profile as data: one action per attribute, options applied."""

import csv
import re
from dataclasses import dataclass, field
from importlib import resources

from crossmed.errors import ConfigError

PROFILE_FILE = "ps3.15-2024b-E.1-1.csv"
STANDARD_REVISION = "DICOM PS3.15 2024b Table E.1-1"

# Option name in conf/ and on the command line -> (column of table E.1-1, code in CID 7050, code meaning).
OPTIONS = {
    "retain_safe_private": ("rtnSafePrivOpt", "113111", "Retain Safe Private Option"),
    "retain_uids": ("rtnUIDsOpt", "113110", "Retain UIDs Option"),
    "retain_device_identity": ("rtnDevIdOpt", "113109", "Retain Device Identity Option"),
    "retain_institution_identity": ("rtnInstIdOpt", "113112", "Retain Institution Identity Option"),
    "retain_patient_characteristics": ("rtnPatCharsOpt", "113108", "Retain Patient Characteristics Option"),
    "retain_long_full_dates": ("rtnLongFullDatesOpt", "113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    "retain_long_modified_dates": ("rtnLongModifDatesOpt", "113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    "clean_descriptors": ("cleanDescOpt", "113105", "Clean Descriptors Option"),
    "clean_structured_content": ("cleanStructContOpt", "113104", "Clean Structured Content Option"),
    "clean_graphics": ("cleanGraphOpt", "113103", "Clean Graphics Option"),
}
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
# When several selected options name an action for one attribute, the most retentive wins.
RETENTION_ORDER = {"K": 0, "C": 1, "U": 2, "D": 3, "Z": 4, "X": 5}


def resolve_basic_action(code: str) -> str:
    """Return the one action crossmed applies for a Basic Profile code such as 'X/Z/D'.

    Without IOD-specific knowledge of attribute types, a combination keeps the file conformant
    by taking a dummy (D) where allowed, else an empty value (Z); UIDs in 'X/Z/U*' are replaced.
    """
    parts = code.replace("*", "").split("/")
    for action in ("U", "D", "Z", "X", "K", "C"):
        if action in parts:
            return action
    raise ValueError(f"unknown action code {code!r}")


@dataclass
class Profile:
    """Per-attribute actions: exact tags, and masks for repeating groups such as 60xx."""

    options: tuple[str, ...]
    exact: dict[int, str] = field(default_factory=dict)
    masks: list[tuple[int, int, str]] = field(default_factory=list)  # (mask, value, action)

    def action_for(self, tag: int) -> str | None:
        """Return the action for a public tag, or None when the table does not list it."""
        action = self.exact.get(tag)
        if action is not None:
            return action
        for mask, value, masked_action in self.masks:
            if tag & mask == value:
                return masked_action
        return None

    def code_sequence(self) -> list[tuple[str, str]]:
        """Return the (code value, meaning) pairs for DeidentificationMethodCodeSequence."""
        return [BASIC_PROFILE_CODE] + [OPTIONS[name][1:] for name in self.options]


def _tag_mask(text: str) -> tuple[int, int]:
    mask = int("".join("0" if c == "X" else "F" for c in text), 16)
    value = int(text.replace("X", "0"), 16)
    return mask, value


def load_profile(options=()) -> Profile:
    """Return the Basic Profile with the named options applied; an unknown option raises ConfigError."""
    options = tuple(options)
    unknown = [o for o in options if o not in OPTIONS]
    if unknown:
        raise ConfigError("deid.options", f"unknown option(s) {unknown}; known: {sorted(OPTIONS)}")
    if "retain_long_full_dates" in options and "retain_long_modified_dates" in options:
        raise ConfigError("deid.options", "choose one of retain_long_full_dates and retain_long_modified_dates")
    profile = Profile(options)
    text = resources.files("crossmed.deid").joinpath("profiles", PROFILE_FILE).read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    for row in rows:
        if not re.fullmatch(r"[0-9A-FX]{8}", row["tag"]):
            continue  # the table's row for all private attributes; crossmed removes them (no safe-private list)
        action = resolve_basic_action(row["basic"])
        chosen = [row[OPTIONS[o][0]] for o in options if row[OPTIONS[o][0]]]
        if chosen:
            action = min(chosen, key=RETENTION_ORDER.__getitem__)
        if "X" in row["tag"]:
            profile.masks.append((*_tag_mask(row["tag"]), action))
        else:
            profile.exact[int(row["tag"], 16)] = action
    return profile
