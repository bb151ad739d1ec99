"""Stage `deidentify`: data.input (paths.raw, the image folder or the MedMNIST file) into paths.deidentified.

What de-identification means is the source's (crossmed.sources.<source>): site DICOM trees and clinical tables,
an image folder with its manifest, or a note for data published de-identified.
"""

from crossmed.sources import get_source


def run(cfg) -> dict:
    """De-identify what data.source brings into paths.deidentified; return the summary per site."""
    return get_source(cfg.data.source).deidentify(cfg)
