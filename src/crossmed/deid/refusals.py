"""Why a source file is refused: a fixed category for what is shared, the full detail for the site only.

Library error messages can quote a file's own values or its path, so the shared rejected.csv carries
only a category from this list and its fixed wording; the detail goes to the site-only record.
"""

from crossmed.errors import InputError

# code -> the sentence rejected.csv shows (fixed wording: it can never carry a value from the file).
REASONS = {
    "not_dicom": "not a DICOM file",
    "unreadable": "unreadable DICOM (damaged or not permitted to read)",
    "too_large": "larger than the size limit (file, inflated data set or decoded pixels)",
    "no_pixel_data": "no pixel data",
    "damaged_pixel_data": "pixel data truncated or its description incomplete",
    "undecodable_pixel_data": "compressed pixel data this installation cannot decode and re-write",
    "burned_in_text": "pixels may carry burned-in text (BurnedInAnnotation YES, or a modality that usually does)",
    "recognizable_features": "the image shows recognisable features of the patient (Recognizable Visual Features YES)",
    "missing_uid": "no SOP Class, SOP Instance or Study Instance UID",
    "invalid_uid": "a UID that is not valid DICOM UID syntax",
    "no_patient_id": "no Patient ID: the patient cannot be kept apart from others under one pseudonym",
    "duplicate_instance": "same SOP Instance as another file that was written",
    "link_outside_source": "symbolic link to a file outside the source folder",
    "skipped_folder": "folder not read: a symbolic link or not permitted to read",
    "not_regular_file": "not a regular file",
    "cannot_deidentify": "could not be de-identified and written (a value crossmed cannot process)",
}


class Refusal(InputError):
    """A source file that is not de-identified: a category code (shared) and a detail (site only)."""

    def __init__(self, path, code: str, detail: str | None = None):
        if code not in REASONS:
            raise ValueError(f"unknown refusal code {code!r}")
        self.code = code
        super().__init__(path, detail or REASONS[code])

    def __reduce__(self):
        return type(self), (self.path, self.code, self.reason)  # worker processes send these back pickled

    @property
    def public_reason(self) -> str:
        """Return the fixed sentence for this refusal's category."""
        return REASONS[self.code]
