"""Apply the confidentiality profile to one pydicom dataset, at every sequence depth.

Listed attributes follow Table E.1-1 with the chosen options; unlisted ones follow the allow-list in
crossmed.deid.unlisted. Text that is kept is searched for the names of every person the file names
(patient and staff), national IDs, phone numbers, e-mail addresses and the like.
"""

import re
from collections import Counter
from dataclasses import dataclass

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from crossmed import __version__
from crossmed.deid.dates import is_datetime, is_time, shift_da, shift_dt
from crossmed.deid.profile import STANDARD_REVISION, Profile
from crossmed.deid.pseudonyms import Pseudonymizer
from crossmed.deid.text_scan import REMOVED, NameSet, contains_identifiers, person_name_variants, scrub_text
from crossmed.deid.unlisted import TEXT_VRS, dictionary_vr, unlisted_action
from crossmed.deid.value_checks import (LUT_DESCRIPTORS, bound_lut_data, declared_vr_fits, digits_of, holds_an_id,
                                         known_character_sets, misdeclared_text, number_identifies, raw_number_is_unsafe,
                                         registered_uid, value_count_fits)

DUMMY_BY_VR = {
    "PN": "ANONYMOUS", "LO": "ANONYMIZED", "SH": "ANONYMIZED", "LT": "ANONYMIZED", "ST": "ANONYMIZED",
    "UT": "ANONYMIZED", "UC": "ANONYMIZED", "CS": "ANONYMIZED", "AE": "ANONYMIZED",
    "DA": "19000101", "TM": "000000.00", "DT": "19000101000000", "AS": "000Y", "IS": "0", "DS": "0",
}
SCANNED_VRS = TEXT_VRS | {"CS"}
EMPTIED_VRS = TEXT_VRS | {"CS", "DA", "TM", "DT"}  # Z leaves these as empty strings, others as no value
PATIENT_ID, PATIENT_NAME, PATIENT_AGE = 0x00100020, 0x00100010, 0x00101010
SPECIFIC_CHARACTER_SET = 0x00080005  # structural: only the terms the standard defines are kept
IDENTIFIER_KEYWORDS = ("PatientID", "OtherPatientIDs", "AccessionNumber", "StudyID", "RequestedProcedureID",
                       "ScheduledProcedureStepID", "PerformedProcedureStepID", "AdmissionID", "MedicalRecordLocator")
CHECKED_NUMBER_VRS = {"IS", "DS", "US", "SS", "UL", "SL", "UV", "SV", "AT", "FL", "FD"}
REMOVED_ACTIONS = {"P": "private_removed", "X": "X", "V": "vr_mismatch_removed"}
CODE_TAGS = frozenset({0x00080100, 0x00080119, 0x00080120, 0x00080103})  # Code Value, Long/URN Code Value, scheme version
NUMBER_KINDS = frozenset({"id_number", "phone", "date"})
AGE_STRING = re.compile(r"\d{3}[DWMY]")
DATE_SYNTAX = re.compile(r"\d{8}|\d{4}\.\d{2}\.\d{2}")  # DA, and the dotted form of older files
OLDEST_REPORTED_AGE = 90  # ages over 89 are one group (HIPAA Safe Harbor, used by many IRBs)


@dataclass
class PatientContext:
    """What the de-identifier knows about the file's patient while it walks the dataset."""

    real_id: str
    pseudo_id: str
    date_offset_days: int
    names: NameSet  # every person the file names (patient and staff) and the patient's IDs: searched for in kept text
    identifier_digits: frozenset[str]  # digits of the patient's IDs and birth date: no kept number may equal one


def _person_names(ds: Dataset) -> list[str]:
    """Return every PN value in the dataset at any depth (patient, staff, observers), decoding nothing else."""
    names = []
    for tag in ds.keys():
        vr = ds.get_item(tag).VR or dictionary_vr(int(tag))
        if vr == "PN" and ds[tag].value:
            values = ds[tag].value if isinstance(ds[tag].value, (list, MultiValue)) else [ds[tag].value]
            names += [str(v) for v in values]
        elif vr == "SQ":
            for item in ds[tag].value or []:
                names += _person_names(item)
    return names


def _plain_values(ds: Dataset, tag) -> list[str]:
    """Return the values of an ASCII element (dates, times, UIDs) read from its raw bytes when it was not decoded yet,
    so a value that passes is written back byte for byte (decoding and re-encoding is the slowest part of writing)."""
    item = ds.get_item(tag)
    if isinstance(item, RawDataElement):
        text = bytes(item.value or b"").decode("latin-1").strip(" \0")
        return [v.strip(" \0") for v in text.split("\\")] if text else []
    value = ds[tag].value
    return [str(v) for v in (value if isinstance(value, (list, MultiValue)) else [value]) if v not in (None, "")]


def _identifiers(ds: Dataset) -> list[str]:
    """Return the patient's IDs the file holds (patient, other and issuer-qualified IDs, accession, study, requests)."""
    values = []
    for keyword in IDENTIFIER_KEYWORDS:
        value = ds.get(keyword)
        values += [str(v) for v in (value if isinstance(value, (list, MultiValue)) else [value]) if v]
    for item in ds.get("OtherPatientIDsSequence", None) or []:
        values += [str(item.get("PatientID", "") or "")]
    return [v.strip() for v in values if len(v.strip()) >= 3]


def _birth_date_forms(ds: Dataset) -> list[str]:
    """Return the ways a birth date is written in text: YYYYMMDD, YYMMDD, DDMMYYYY, DDMMYY, MMDDYY, and without the
    leading zeros of day and month (1.1.80); separators are matched like a name's."""
    value = str(ds.get("PatientBirthDate", "") or "").strip()
    if len(value) != 8 or not value.isdigit():
        return []
    yyyy, yy, mm, dd = value[:4], value[2:4], value[4:6], value[6:]
    m, d = str(int(mm)), str(int(dd))
    forms = [value, yy + mm + dd, dd + mm + yyyy, dd + mm + yy, mm + dd + yy, d + m + yy, m + d + yy, d + m + yyyy]
    return list(dict.fromkeys(f for f in forms if len(f) >= 4))


def patient_context(ds: Dataset, pseudonyms: Pseudonymizer) -> PatientContext:
    """Return the patient context of a dataset: pseudonym, date shift, and the names and IDs to search for."""
    real_id = str(ds.get("PatientID", "") or "")
    identifiers = _identifiers(ds) + _birth_date_forms(ds)
    digits = frozenset(d.lstrip("0") for d in map(digits_of, identifiers) if len(d.lstrip("0")) >= 5)
    # The patient's names and IDs are one pattern (both are the patient's own); the staff's recur across patients.
    patient_name = str(ds.get("PatientName", "") or "")
    patient = (*person_name_variants(patient_name), *identifiers)
    staff = [person_name_variants(name) for name in _person_names(ds) if name != patient_name]
    return PatientContext(real_id, pseudonyms.patient_id(real_id), pseudonyms.date_offset_days(real_id),
                          NameSet([patient, *staff]), digits)


class DatasetDeidentifier:
    """Walks a dataset applying one action per attribute; counts what it did."""

    def __init__(self, profile: Profile, pseudonyms: Pseudonymizer):
        self.profile = profile
        self.pseudonyms = pseudonyms
        self.shift_dates = "retain_long_modified_dates" in profile.options
        self.dates = "shift" if self.shift_dates else "keep" if "retain_long_full_dates" in profile.options else "remove"

    def apply(self, ds: Dataset) -> tuple[PatientContext, Counter]:
        """De-identify `ds` in place (not its file meta, which is written anew); return the patient context and counts."""
        patient = patient_context(ds, self.pseudonyms)
        counts: Counter = Counter()
        self._walk(ds, patient, counts)
        self._mark(ds)
        return patient, counts

    def action(self, ds: Dataset, tag, parent: str = "top") -> tuple[str, str | None]:
        """Return (action, VR as read) for one element: P private, V a VR its tag does not allow, else the table's
        action or the allow-list's; `parent` is 'top' or the keyword of the sequence the element stands in."""
        vr = ds.get_item(tag).VR
        if tag.is_private:
            return "P", vr
        if not declared_vr_fits(int(tag), vr):
            return "V", vr  # a text written as a number or a UID would pass every check made for its declared VR
        action = self.profile.action_for(int(tag))
        return (action if action is not None else unlisted_action(int(tag), vr, self.dates, parent)), vr

    def _walk(self, ds: Dataset, patient: PatientContext, counts: Counter, parent: str = "top") -> None:
        for tag in list(ds.keys()):
            action, raw_vr = self.action(ds, tag, parent)
            if action in REMOVED_ACTIONS:
                del ds[tag]  # removed (a sequence with everything in it) without decoding its value
                counts[REMOVED_ACTIONS[action]] += 1
                continue
            vr = raw_vr or dictionary_vr(int(tag))
            if int(tag) == SPECIFIC_CHARACTER_SET:
                ds[tag].value = known_character_sets(ds[tag].value)
                continue
            if int(tag) in LUT_DESCRIPTORS:
                if not bound_lut_data(ds, int(tag)):
                    del ds[tag]
                    counts["lut_without_descriptor_removed"] += 1
                continue
            if action in ("K", "C") and vr in ("DA", "TM", "DT") and not self._well_formed_times(ds, tag, vr, action):
                del ds[tag]  # text written where a date or time belongs
                counts["malformed_date_or_time_removed"] += 1
                continue
            if action == "K" and vr == "UI":
                self._kept_uids(ds, tag, patient, counts)
                continue
            if action == "K" and vr not in SCANNED_VRS | CHECKED_NUMBER_VRS | {"SQ"} and int(tag) != PATIENT_AGE:
                continue  # pixels, LUTs and well-formed dates and times: kept byte for byte, never decoded
            if action == "K" and vr in CHECKED_NUMBER_VRS:
                if self._unsafe_number(ds, tag, vr, patient):
                    del ds[tag]
                    counts["number_removed"] += 1
                continue
            element = ds[tag]
            if element.VR == "SQ":
                self._sequence(ds, tag, action, patient, counts)
            elif action == "Z":
                counts["Z"] += 1
                element.value = patient.pseudo_id if int(tag) == PATIENT_NAME else (
                    "" if element.VR in EMPTIED_VRS else None)  # Z allows a dummy: viewers then show the pseudonym
            elif action == "D":
                counts["D"] += 1
                element.value = self._dummy(int(tag), element.VR, patient)
            elif action == "U":
                counts["U"] += 1
                element.value = self._uids(element.value)
            elif action == "C":
                counts["C"] += 1
                self._clean(ds, tag, patient, counts)
            elif int(tag) == PATIENT_AGE:  # K under retain_patient_characteristics
                self._generalised_age(ds, tag, counts)
            else:  # K
                self._scan(ds, tag, patient, counts)

    @staticmethod
    def _unsafe_number(ds: Dataset, tag, vr: str, patient: PatientContext) -> bool:
        """Return whether a kept number must go, judged from its raw bytes when it has not been decoded yet."""
        item = ds.get_item(tag)
        if isinstance(item, RawDataElement) and item.value is not None:
            return raw_number_is_unsafe(int(tag), vr, bytes(item.value), item.is_little_endian, patient.identifier_digits)
        element = ds[tag]
        return not value_count_fits(element) or number_identifies(element, patient.identifier_digits)

    def _sequence(self, ds, tag, action, patient, counts) -> None:
        if action == "Z":
            ds[tag].value = Sequence()
            counts["Z"] += 1
        elif action == "D":
            ds[tag].value = Sequence([Dataset()])  # replaced, not walked: its items may hold anything (SR text, names)
            counts["D"] += 1
        else:
            for item in ds[tag].value:
                self._walk(item, patient, counts, ds[tag].keyword or "unknown")

    def _dummy(self, tag: int, vr: str, patient: PatientContext):
        if tag in (PATIENT_ID, PATIENT_NAME):
            return patient.pseudo_id
        return DUMMY_BY_VR.get(vr)

    def _uids(self, value):
        """Return UIDs re-derived from the site key; UIDs the standard registers (SOP classes and the like) are kept."""
        def one(uid):
            return str(uid) if registered_uid(uid) else self.pseudonyms.uid(str(uid))

        if isinstance(value, (list, MultiValue)):
            return [one(v) for v in value]
        return one(value) if value else value

    def _clean(self, ds, tag, patient, counts) -> None:
        element = ds[tag]
        if element.VR in ("DA", "DT") and self.shift_dates and element.value:
            shift = shift_da if element.VR == "DA" else shift_dt
            try:
                values = element.value if isinstance(element.value, (list, MultiValue)) else [element.value]
                shifted = [shift(str(v), patient.date_offset_days) for v in values]
                element.value = shifted if len(shifted) > 1 else shifted[0]
                counts["dates_shifted"] += 1
            except ValueError:
                element.value = ""
                counts["invalid_date_removed"] += 1
        elif element.VR in ("DA", "DT"):
            element.value = ""  # cleaning a date without the modified-dates option leaves nothing of it
        else:
            self._scan(ds, tag, patient, counts)

    def _scan(self, ds: Dataset, tag, patient: PatientContext, counts: Counter) -> None:
        """Search a kept text or code value; a code string holding an identifier is removed (it cannot hold a marker)."""
        element = ds[tag]
        if element.VR not in SCANNED_VRS or not element.value:
            return
        multi = isinstance(element.value, (list, MultiValue))
        values = list(element.value) if multi else [element.value]
        cleaned = []
        for value in values:
            if misdeclared_text(str(value)):  # its words are unreadable in the declared character set: none is kept
                counts["text_misdeclared_charset"] += 1
                cleaned.append(REMOVED)
                continue
            if int(tag) in CODE_TAGS:  # a vocabulary's code: its digits are no ID, but a name or national ID is one
                kinds = [k for k in contains_identifiers(str(value), patient.names) if k not in NUMBER_KINDS]
                cleaned.append(REMOVED if kinds else value)
                counts.update(f"text_{kind}" for kind in kinds)
                continue
            text, kinds = scrub_text(str(value), patient.names)
            for kind in kinds:
                counts[f"text_{kind}"] += 1
            cleaned.append(text)
        if cleaned == [str(v) for v in values]:
            return
        if element.VR == "CS":
            del ds[tag]
            counts["code_string_removed"] += 1
        else:
            element.value = cleaned if multi else cleaned[0]

    @staticmethod
    def _generalised_age(ds: Dataset, tag, counts: Counter) -> None:
        """Group ages over 89 as 090Y; an age not written as DICOM writes ages (095 or 95Y) is removed, not guessed."""
        text = str(ds[tag].value or "").strip()
        if not text:
            return
        if not AGE_STRING.fullmatch(text):
            del ds[tag]
            counts["malformed_age_removed"] += 1
        elif text[3] == "Y" and int(text[:3]) > OLDEST_REPORTED_AGE - 1:
            ds[tag].value = f"{OLDEST_REPORTED_AGE:03d}Y"
            counts["age_generalised"] += 1

    @staticmethod
    def _well_formed_times(ds: Dataset, tag, vr: str, action: str) -> bool:
        """Return whether every value of a kept date or time is one (shifting checks what it cleans itself)."""
        if action == "C" and vr in ("DA", "DT"):
            return True
        values = _plain_values(ds, tag)
        check = is_time if vr == "TM" else (lambda v: bool(DATE_SYNTAX.fullmatch(v)) if vr == "DA" else is_datetime(v))
        return all(check(str(v).strip()) for v in values if v not in (None, ""))

    def _kept_uids(self, ds: Dataset, tag, patient: PatientContext, counts: Counter) -> None:
        """Re-derive a kept UID that holds one of the patient's IDs (a class UID made of an RRN is no class)."""
        values = _plain_values(ds, tag)
        if any(holds_an_id(digits_of(v), patient.identifier_digits) for v in values if v and not registered_uid(v)):
            ds[tag].value = [self.pseudonyms.uid(str(v)) for v in values] if len(values) > 1 else self.pseudonyms.uid(str(values[0]))
            counts["uid_with_identifier_rederived"] += 1

    def _mark(self, ds: Dataset) -> None:
        ds.PatientIdentityRemoved = "YES"
        # LO allows 64 characters per value: tool, standard and each option are separate values.
        ds.DeidentificationMethod = [f"crossmed {__version__}", STANDARD_REVISION, *self.profile.options]
        codes = []
        for value, meaning in self.profile.code_sequence():
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
            codes.append(item)
        ds.DeidentificationMethodCodeSequence = codes
        if self.shift_dates:
            ds.LongitudinalTemporalInformationModified = "MODIFIED"
        elif "retain_long_full_dates" in self.profile.options:
            ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
        else:
            ds.LongitudinalTemporalInformationModified = "REMOVED"
