"""De-identification of DICOM files and clinical tables (DICOM PS3.15 Annex E, keyed pseudonyms)."""
