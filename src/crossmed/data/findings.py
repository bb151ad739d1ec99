"""Where each image's finding is on the processed grid, for sources that record it (the built-in cohort does)."""

import pandas as pd

from crossmed.data.image_transforms import point_on_grid

# Where the finding is, in the source image's pixels (the built-in cohort knows; preprocess maps it onto the grid).
SOURCE_FINDING_COLUMNS = ("finding_row", "finding_col", "finding_radius")


def findings_on_grid(manifest: pd.DataFrame, data) -> pd.DataFrame | None:
    """Return each image's finding (row, column, radius) on the processed grid, from its source-pixel position; None
    when the source records none. Test and benchmark ground truth for saliency (the pointing game); not PHI."""
    if not set(SOURCE_FINDING_COLUMNS) <= set(manifest.columns):
        return None
    out = []
    for _, row in manifest.iterrows():
        values = pd.to_numeric(pd.Series([row[c] for c in SOURCE_FINDING_COLUMNS]), errors="coerce")
        if values.isna().any() or not row.get("source_shape"):
            out.append({c: "" for c in SOURCE_FINDING_COLUMNS})
            continue
        shape = tuple(int(n) for n in str(row["source_shape"]).split("x"))
        spacing = tuple(float(v) for v in str(row["source_spacing_mm"]).split("x")) if row.get("source_spacing_mm") else None
        (r, c), radius = point_on_grid((values[0], values[1]), float(values[2]), shape, spacing,
                                       float(data.spacing_mm) if data.get("spacing_mm") else None, int(data.image_size))
        out.append({"finding_row": round(r, 2), "finding_col": round(c, 2), "finding_radius": round(radius, 2)})
    return pd.DataFrame(out, index=manifest.index)
