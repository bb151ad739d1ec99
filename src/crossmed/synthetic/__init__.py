"""The built-in synthetic multi-site cohort: DICOM files with realistic PHI and a learnable finding."""
