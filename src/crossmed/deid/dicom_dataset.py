"""Apply the confidentiality profile to one pydicom dataset, at every sequence depth."""

from collections import Counter
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from crossmed import __version__
from crossmed.deid.dates import shift_da, shift_dt
from crossmed.deid.profile import STANDARD_REVISION, Profile
from crossmed.deid.pseudonyms import Pseudonymizer
from crossmed.deid.text_scan import name_components, scrub_text

TEXT_VRS = {"LO", "LT", "SH", "ST", "UT", "UC", "PN"}
DUMMY_BY_VR = {
    "PN": "ANONYMOUS", "LO": "ANONYMIZED", "SH": "ANONYMIZED", "LT": "ANONYMIZED", "ST": "ANONYMIZED",
    "UT": "ANONYMIZED", "UC": "ANONYMIZED", "CS": "ANONYMIZED", "AE": "ANONYMIZED",
    "DA": "19000101", "TM": "000000.00", "DT": "19000101000000", "AS": "000Y", "IS": "0", "DS": "0",
}
PATIENT_ID, PATIENT_NAME, PATIENT_AGE = 0x00100020, 0x00100010, 0x00101010
OLDEST_REPORTED_AGE = 90  # ages over 89 are one group (HIPAA Safe Harbor, used by many IRBs)


@dataclass
class PatientContext:
    """What the de-identifier knows about the file's patient while it walks the dataset."""

    real_id: str
    pseudo_id: str
    date_offset_days: int
    names: list[str]


def patient_context(ds: Dataset, pseudonyms: Pseudonymizer) -> PatientContext:
    """Return the patient context of a dataset: pseudonym, date shift and name variants to scrub."""
    real_id = str(ds.get("PatientID", "") or "")
    names = []
    name = str(ds.get("PatientName", "") or "")
    for group in name.split("="):
        family, _, rest = group.partition("^")
        given = rest.split("^")[0]
        if family and given:
            names += [f"{family}{given}", f"{given}{family}", f"{family} {given}", f"{given} {family}"]
    names = sorted(set(names + name_components(name)), key=len, reverse=True)
    return PatientContext(real_id, pseudonyms.patient_id(real_id), pseudonyms.date_offset_days(real_id), names)


class DatasetDeidentifier:
    """Walks a dataset applying one action per attribute; counts what it did."""

    def __init__(self, profile: Profile, pseudonyms: Pseudonymizer):
        self.profile = profile
        self.pseudonyms = pseudonyms
        self.shift_dates = "retain_long_modified_dates" in profile.options

    def apply(self, ds: Dataset) -> tuple[PatientContext, Counter]:
        """De-identify `ds` in place (file meta included); return the patient context and action counts."""
        patient = patient_context(ds, self.pseudonyms)
        counts: Counter = Counter()
        self._walk(ds, patient, counts)
        self._mark(ds)
        if getattr(ds, "file_meta", None) is not None and "SOPInstanceUID" in ds:
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle", "ReceivingApplicationEntityTitle"):
                if keyword in ds.file_meta:
                    del ds.file_meta[keyword]
        return patient, counts

    def _walk(self, ds: Dataset, patient: PatientContext, counts: Counter) -> None:
        for tag in list(ds.keys()):
            if tag.is_private:
                del ds[tag]
                counts["private_removed"] += 1
                continue
            action = self.profile.action_for(int(tag))
            if action == "X":
                del ds[tag]  # removed (a sequence with everything in it) without decoding its value
                counts["X"] += 1
                continue
            if self._untouched(ds, tag, action):
                continue
            element = ds[tag]
            if element.VR == "SQ":
                self._sequence(ds, tag, action, patient, counts)
                continue
            if action is None:
                self._scan(element, patient, counts)
                continue
            counts[action] += 1
            if action == "Z" and int(tag) == PATIENT_NAME:
                element.value = patient.pseudo_id  # Z allows a dummy; viewers then show the pseudonym
            elif action == "Z":
                element.value = None if element.VR not in TEXT_VRS | {"CS", "AE", "DA", "TM", "DT", "AS"} else ""
            elif action == "D":
                element.value = self._dummy(int(tag), element.VR, patient)
            elif action == "U":
                element.value = self._uids(element.value)
            elif action == "C":
                self._clean(ds, tag, patient, counts)
            elif action == "K":
                if int(tag) == PATIENT_AGE:
                    element.value = self._generalised_age(element.value, counts)
                self._scan(element, patient, counts)

    @staticmethod
    def _raw_vr(ds: Dataset, tag) -> str | None:
        """Return an element's VR without decoding its value (None when the file's implicit VR hides it)."""
        return ds.get_item(tag).VR

    def _untouched(self, ds: Dataset, tag, action: str | None) -> bool:
        """Return True for elements kept byte for byte: not listed (or kept) and neither text nor a sequence."""
        if action not in (None, "K") or int(tag) == PATIENT_AGE:
            return False
        vr = self._raw_vr(ds, tag)
        return vr is not None and vr != "SQ" and vr not in TEXT_VRS and vr != "UN"

    def _sequence(self, ds, tag, action, patient, counts) -> None:
        if action == "Z":
            ds[tag].value = Sequence()
            counts["Z"] += 1
        else:
            for item in ds[tag].value:
                self._walk(item, patient, counts)

    def _dummy(self, tag: int, vr: str, patient: PatientContext):
        if tag in (PATIENT_ID, PATIENT_NAME):
            return patient.pseudo_id
        return DUMMY_BY_VR.get(vr)

    def _uids(self, value):
        if isinstance(value, (list, MultiValue)):
            return [self.pseudonyms.uid(str(v)) for v in value]
        return self.pseudonyms.uid(str(value)) if value else value

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
        else:
            self._scan(element, patient, counts)

    def _scan(self, element, patient: PatientContext, counts: Counter) -> None:
        if element.VR not in TEXT_VRS or not element.value:
            return
        multi = isinstance(element.value, (list, MultiValue))
        values = list(element.value) if multi else [element.value]
        cleaned = []
        for value in values:
            text, kinds = scrub_text(str(value), patient.names)
            for kind in kinds:
                counts[f"text_{kind}"] += 1
            cleaned.append(text)
        if cleaned != [str(v) for v in values]:
            element.value = cleaned if multi else cleaned[0]

    def _generalised_age(self, value, counts: Counter):
        text = str(value or "")
        if len(text) == 4 and text[3] == "Y" and text[:3].isdigit() and int(text[:3]) > OLDEST_REPORTED_AGE - 1:
            counts["age_generalised"] += 1
            return f"{OLDEST_REPORTED_AGE:03d}Y"
        return value

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
