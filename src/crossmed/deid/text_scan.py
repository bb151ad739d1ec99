"""Find and remove identifiers in free text: national IDs, phone numbers, the patient's name."""

import re
from functools import lru_cache

from crossmed.national_ids import find_estonian_codes, find_korean_rrns

REMOVED = "[REMOVED]"
PHONE = re.compile(r"(?<!\d)(?:\+\d{1,3}[ -]?)?(?:\(?\d{2,4}\)?[ -]?)?\d{3,4}[ -]\d{4}(?!\d)")


def name_components(person_name: str) -> list[str]:
    """Return the searchable parts of a DICOM PN value: every component of every group, longest first."""
    parts = re.split(r"[=^ ]", person_name or "")
    return sorted({p.strip() for p in parts if p.strip()}, key=len, reverse=True)


def find_identifiers(text: str, names: list[str]) -> list[tuple[int, int, str]]:
    """Return (start, end, kind) spans of identifiers in `text`."""
    spans = [(s, e, "korean_rrn") for s, e in find_korean_rrns(text)]
    spans += [(s, e, "estonian_code") for s, e in find_estonian_codes(text)]
    spans += [(m.start(), m.end(), "phone") for m in PHONE.finditer(text)]
    for pattern in _name_patterns(tuple(names)):
        spans += [(m.start(), m.end(), "patient_name") for m in pattern.finditer(text)]
    return spans


@lru_cache(maxsize=256)
def _name_patterns(names: tuple[str, ...]) -> list[re.Pattern]:
    """Return one compiled pattern per name variant (cached: a patient's files share them)."""
    # A one-character component (a Korean family name such as 김) counts only as a word of its own;
    # longer ones count anywhere, since Korean attaches particles to names (김민준님).
    return [re.compile(rf"(?<!\w){re.escape(n)}(?!\w)" if len(n) == 1 else re.escape(n), re.IGNORECASE) for n in names]


def scrub_text(text: str, names: list[str]) -> tuple[str, list[str]]:
    """Return `text` with identifier spans replaced by [REMOVED], and the kinds found."""
    spans = sorted(find_identifiers(text, names))
    if not spans:
        return text, []
    pieces, cursor, kinds = [], 0, []
    for start, end, kind in spans:
        kinds.append(kind)
        if start >= cursor:
            pieces.append(text[cursor:start] + REMOVED)
            cursor = end
        elif end > cursor:
            cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces), kinds
