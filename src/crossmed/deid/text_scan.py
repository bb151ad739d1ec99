"""Find and remove identifiers in free text: national IDs, phone and other ID numbers, e-mail, URLs, dates, names.

Matching runs on a normalised view of the text (NFKC, casefolded, diacritics dropped, dashes and spaces unified,
Hangul syllables kept whole) that remembers which original character each of its characters came from, so every
span found maps back onto the original text and the output keeps the original everywhere else.
"""

import re
from collections.abc import Sequence

# name_components and person_name_variants are re-exported: callers have long imported them from this module.
from crossmed.deid.person_names import NameSet, name_components, person_name_variants, titled_name_spans
from crossmed.deid.text_normalise import normalise, original_span, romanised
from crossmed.national_ids import find_estonian_codes, find_korean_rrns

REMOVED = "[REMOVED]"
_HANGUL = re.compile("[\uac00-\ud7a3]")
MAX_PASSES = 4  # each pass removes at least one span; four cover every nesting seen, and bound the work
KINDS = ("korean_rrn", "estonian_code", "email", "url", "date", "age_over_89", "phone", "patient_name", "titled_name",
         "id_number")

# ---------------------------------------------------------------------------------------------------------------
# Numbers, addresses and dates (patterns run on the normalised view: ASCII digits, '-' for dashes, ' ' for spaces)
# ---------------------------------------------------------------------------------------------------------------

# Groups of digits joined by one separator (space - . / or parentheses): phone numbers, IDs and national IDs
# however they are typed. Each joiner is non-empty, so matching stays linear; a leading + or (+ is added after.
_DIGIT_RUN = re.compile(r"[0-9]+(?:(?:\)[ ./-]?\(?| ?[./-] ?\(?| ?\(| )[0-9]+)*")
_RUN_LEAD = re.compile(r"(?:\(\+?|\+ ?)$")
# Words holding five digits or more (AB12345678, PID-123456). The first character comes first so the engine can
# skip to it, and the look-ahead for digits gives up after 40 letters between two, so a.a.a.a... costs linear time.
_TOKEN = re.compile(r"[0-9a-z](?<![0-9a-z].)(?:(?<=[0-9])(?=(?:[-_./#a-z]{0,40}[0-9]){4})|(?=(?:[-_./#a-z]{0,40}[0-9]){5}))"
                    r"[0-9a-z]*(?:[-_./#][0-9a-z]+)*")
_LATIN_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyz")
_KEEP_DIGITS = {c: None for c in range(128) if not chr(c).isdigit()}
# Measurements are not identifiers: 512x512 matrices, 1234.56 mGy*cm, window 400/40 (short groups, six digits at most).
_MEASUREMENT = re.compile(r"[0-9]{1,4}(?:x[0-9]{1,4}){1,2}|(?=(?:[./]?[0-9]){5,6}$)[0-9]{1,4}(?:[./][0-9]{1,4})+")
_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@[\w-]+(?:\.[\w-]+)+")  # starts only where a word does: linear time
_URL = re.compile(r"(?:(?<![a-z])(?:https?|ftps?|sftp|dicomweb|wado)://|(?<![\w.@-])www\.)[^\s<>\"'{}|\\^`\[\]]+")
_TLDS = "com|net|org|edu|gov|mil|int|info|biz|io|kr|ee|eu|de|fi|lv|lt|se|no|dk|uk|us|jp|cn|ru|ch|at|nl|fr|it|es|pl"
_BARE_DOMAIN = re.compile(rf"(?<![\w.@-])(?:[a-z0-9-]+\.)+(?:{_TLDS})(?![\w-])(?:[/?#][^\s<>\"']*)?")
_TLD_HINT = re.compile(rf"\.(?:{_TLDS})(?![\w-])")
_URL_TRAILING = ".,;:!?)]}'\""

_Y = r"(?:19|20)[0-9]{2}"
_M = r"(?:0?[1-9]|1[0-2])"
_D = r"(?:0?[1-9]|[12][0-9]|3[01])"
_S = r" ?[-./] ?"
_MONTH_EN = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
             r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)(?![a-z])")
_MONTH_ET = r"(?:jaanuar|veebruar|marts|aprill|mai|juuni|juuli|august|september|oktoober|november|detsember)[a-z]*"
_DATE = re.compile("|".join([
    rf"(?<![0-9]){_Y}{_S}{_M}{_S}{_D}(?![0-9])",                     # 2024-03-13, 2024.03.13, 2024/3/13, 2024. 3. 13
    rf"(?<![0-9.]){_D}{_S}{_M}{_S}{_Y}(?![0-9])",                    # 13.03.2024, 13/3/2024
    rf"(?<![0-9.]){_M}{_S}{_D}{_S}{_Y}(?![0-9])",                    # 3/13/2024
    r"(?<![0-9.])[0-3][0-9]\.[01][0-9]\.[0-9]{2}(?![0-9.])",         # 13.03.24
    rf"(?<![0-9]){_Y} ?년 ?{_M} ?월(?: ?{_D} ?일)?",                 # 2024년 3월 13일, 2024년 3월
    rf"(?<![0-9]){_M} ?월 ?{_D} ?일",                                 # 3월 13일
    rf"(?<![0-9]){_D}\. ?{_MONTH_ET}(?: {_Y}(?![0-9]))?",             # 13. märts 2024, 13. märtsil
    rf"(?<![0-9a-z]){_D}(?:st|nd|rd|th)?\.? (?:of )?{_MONTH_EN}\.?,? {_Y}(?![0-9])",  # 13 March 2024
]))
# Where a date may start: the first digits of a group, then a date separator or a month's first letter (v: veebruar).
_DATE_START = re.compile(r"([0-9](?<![0-9].)[0-9]{0,3})(?: ?[-./년월] ?[0-9]| ?(?:st|nd|rd|th)?\.? ?[adfjmnosv])")
_YEAR = re.compile(r"(?:19|20)[0-9]{2}")
_DATE_MONTH_FIRST = re.compile(rf"(?<![a-z]){_MONTH_EN}\.? {_D}(?:st|nd|rd|th)?,? {_Y}(?![0-9])")  # March 13, 2024


# A birth date after its cue, in any order and with two-digit years (DOB 80.01.01, sünd 1.1.80, 생년월일 80/1/1).
_BIRTH_DATE = re.compile(r"(?<![a-z])(?:dob|d\.o\.b\.?|born|birth(?:\s?date)?|date of birth|sund\w*|sunn\w*|s\.\s?k\.|생년월일|출생)"
                         r"\s?:?\s?([0-9]{1,4}\s?[./-]\s?[0-9]{1,2}\s?[./-]\s?[0-9]{1,4})(?![0-9])")
# An age over 89 in words: HIPAA and PS3.15 group those ages, so the text must not keep one (93-year-old, 92 세).
_OLD_AGE = re.compile(r"(?<![0-9.])(?:9[0-9]|1[0-4][0-9])\s?-?\s?(?:years?(?:[- ]old)?|yrs?|y\.?\s?o\.?|y/o|세|살|aastane|a\.?\s?vana)"
                      r"(?![a-z])")


def _digit_count(view: str) -> int:
    """Return how many ASCII digits the normalised view holds."""
    return sum(map(view.count, "0123456789"))


def _digit_runs(view: str) -> list[tuple[int, int, int]]:
    """Return (start, end, digit count) of the runs of 7 digits or more, a leading + or (+ included."""
    runs = []
    for m in _DIGIT_RUN.finditer(view):
        count = _digit_count(m.group())
        start = m.start()
        if count < 7 or (start and view[start - 1] in _LATIN_LETTERS):
            continue  # short, or inside a word (AB12345678): an ID token, found separately
        lead = _RUN_LEAD.search(view, max(0, start - 2), start)
        runs.append((lead.start() if lead else start, m.end(), count))
    return runs


def _run_kind(run: str) -> str:
    """Return whether a digit run reads as a phone number or as some other ID number."""
    digits = run.translate(_KEEP_DIGITS)
    if run.lstrip("(").startswith("+") or digits.startswith("00"):
        return "phone"
    if digits[0] == "0" and 9 <= len(digits) <= 11:
        return "phone"  # Korean numbers: 010-1234-5678, 02-123-4567, 033-123-4567
    if digits[0] in "34567" and len(digits) in (7, 8):
        return "phone"  # Estonian numbers: 5123 4567, 7 123 456
    return "id_number"


def _strip_url(view: str, start: int, end: int) -> int:
    """Return `end` moved back over sentence punctuation that follows a URL."""
    while end > start and view[end - 1] in _URL_TRAILING:
        end -= 1
    return end


def _dates(view: str) -> list[tuple[int, int]]:
    """Return view spans of dates written in text."""
    spans, pos = [], 0
    # The full date pattern is tried only where digits are followed by a date separator or a word: scanning with
    # it everywhere costs more than all the other detectors together.
    while (candidate := _DATE_START.search(view, pos)) is not None:
        m = _DATE.match(view, candidate.start())
        if m:
            spans.append(m.span())
        pos = m.end() if m else candidate.end(1)
    if _YEAR.search(view):
        spans += [m.span() for m in _DATE_MONTH_FIRST.finditer(view)]
    spans += [m.span(1) for m in _BIRTH_DATE.finditer(view)]
    return spans


# ---------------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------------

def find_identifiers(text: str, names: "Sequence[str] | NameSet") -> list[tuple[int, int, str]]:
    """Return (start, end, kind) spans of identifiers in the original `text`, ordered by start."""
    if not text:
        return []
    view, starts = normalise(text)
    found: list[tuple[int, int, str]] = []  # in priority order: a span inside an earlier one adds nothing
    digits = _digit_count(view)
    runs = _digit_runs(view) if digits >= 7 else []
    for start, end, run_digits in runs:
        # National IDs lie inside digit runs: searching only the long runs spares a scan of every text.
        if run_digits >= 11:
            run = view[start:end]
            found += [(start + s, start + e, "korean_rrn") for s, e in find_korean_rrns(run)]
            found += [(start + s, start + e, "estonian_code") for s, e in find_estonian_codes(run)]
    if "@" in view:
        found += [(m.start(), m.end(), "email") for m in _EMAIL.finditer(view)]
    if "://" in view or "www." in view:
        found += [(m.start(), _strip_url(view, m.start(), m.end()), "url") for m in _URL.finditer(view)]
    if _TLD_HINT.search(view):
        found += [(m.start(), _strip_url(view, m.start(), m.end()), "url") for m in _BARE_DOMAIN.finditer(view)]
    if digits >= 2:
        found += [(s, e, "date") for s, e in _dates(view)]  # before phones: 3/13/2024 has a phone's seven digits
        found += [(m.start(), m.end(), "age_over_89") for m in _OLD_AGE.finditer(view)]
    numbers = [(start, end, _run_kind(view[start:end])) for start, end, _ in runs]
    found += [span for span in numbers if span[2] == "phone"]
    for mains, shorts in NameSet.of(names).patterns:
        spans = [m.span() for main in mains for m in main.finditer(view)]
        spans += [m.span() for short in shorts for m in short.finditer(view)
                  if text[starts[m.start()] if starts is not None else m.start()].isupper()]
        # Longest first: a family+given span goes in before its parts, which then lie inside it and add nothing.
        found += [(s, e, "patient_name") for s, e in sorted(spans, key=lambda span: (span[0] - span[1], span[0]))]
    found += [(s, e, "titled_name") for s, e in titled_name_spans(view, text, starts)]
    found += [span for span in numbers if span[2] == "id_number"]
    if digits >= 5:
        for m in _TOKEN.finditer(view):
            token = m.group()
            if _digit_count(token) >= 5 and not _MEASUREMENT.fullmatch(token):
                found.append((m.start(), m.end(), "id_number"))
    accepted: list[tuple[int, int, str]] = []
    for span in found:
        start, end, _ = span
        if end <= start:
            continue
        for s, e, _ in accepted:
            if s <= start and end <= e:
                break
        else:
            accepted.append(span)
    spans = accepted if starts is None else [(*original_span(s, e, starts, len(text)), kind) for s, e, kind in accepted]
    extra = [r for r in _names_in_romanised_hangul(text, view, names) if not any(s < r[1] and r[0] < e for s, e, _ in spans)]
    return sorted(spans + extra)


def _names_in_romanised_hangul(text: str, view: str, names: "Sequence[str] | NameSet") -> list[tuple[int, int, str]]:
    """Return spans (in the original text) of Latin-script names written in Hangul (Hong Gildong as 홍길동)."""
    if not _HANGUL.search(view):
        return []
    roman, origin = romanised(text)
    spans = []
    for mains, _ in NameSet.of(names).patterns:
        for m in (m for main in mains for m in main.finditer(roman)):
            start, last = origin[m.start()], origin[m.end() - 1]
            if _HANGUL.match(text[start]) and _HANGUL.match(text[last]):  # a whole syllable run, not Latin text again
                spans.append((start, last + 1, "patient_name"))
    return spans


def scrub_text(text: str, names: "Sequence[str] | NameSet") -> tuple[str, list[str]]:
    """Return `text` with identifier spans (overlapping ones merged) replaced by [REMOVED], and the kinds found.

    Passes repeat until one finds nothing: removing a name can leave text that reads as an identifier only now
    ('example.kr홍길동' -> 'example.kr[REMOVED]', a URL; '판독 홍길동Dr. Tamm' -> a titled name at a word start).
    """
    kinds: list[str] = []
    for _ in range(MAX_PASSES):
        text, found = _scrub_once(text, names)
        if not found:
            break
        kinds += found
    return text, kinds


def _scrub_once(text: str, names: "Sequence[str] | NameSet") -> tuple[str, list[str]]:
    """Return `text` with one pass of identifier spans replaced, and the kinds found."""
    spans = find_identifiers(text, names)
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


def contains_identifiers(text: str, names: "Sequence[str] | NameSet") -> list[str]:
    """Return the kinds of identifier found in `text` (empty when none): the check a PHI gate needs."""
    return [kind for _, _, kind in find_identifiers(text, names)]
