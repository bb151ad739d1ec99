"""The normalised view of text that identifier matching runs on, with the map back to original offsets.

The view is NFKC, casefolded, with diacritics and invisible characters dropped, dashes and spaces unified,
digits in ASCII and Cyrillic in Latin letters, Hangul syllables kept whole; it remembers which original
character each of its characters came from. A second view romanises Hangul (Revised Romanization), so names
known only in Latin letters are found in Korean text. Also here: the character classes the matchers share.
"""

import re
import unicodedata

_ASCII_SPACES = str.maketrans("\t\n\r\v\f", "     ")
_PLAIN = re.compile("[ -~\uac00-\ud7a3]*")
# Cyrillic read as Latin letters (a common scholarly romanisation), so Ivanov matches Иванов: Estonia's Russian
# speakers are often named in one script in the header and in the other in free text.
_CYRILLIC = dict(zip("абвгдеёжзийклмнопрстуфхцчшщъыьэюяіїєґ",
                     ["a", "b", "v", "g", "d", "e", "e", "zh", "z", "i", "i", "k", "l", "m", "n", "o", "p", "r", "s", "t",
                      "u", "f", "kh", "ts", "ch", "sh", "shch", "", "y", "", "e", "yu", "ya", "i", "i", "ye", "g"]))
# Revised Romanization of Korean, per syllable part (initial, medial, final), as names are romanised.
_RR_INITIALS = ["g", "kk", "n", "d", "tt", "r", "m", "b", "pp", "s", "ss", "", "j", "jj", "ch", "k", "t", "p", "h"]
_RR_MEDIALS = ["a", "ae", "ya", "yae", "eo", "e", "yeo", "ye", "o", "wa", "wae", "oe", "yo", "u", "wo", "we", "wi", "yu",
               "eu", "ui", "i"]
_RR_FINALS = ["", "k", "k", "k", "n", "n", "n", "t", "l", "k", "m", "l", "l", "l", "p", "l", "m", "p", "p", "t", "t",
              "ng", "t", "t", "k", "t", "p", "t"]


def _is_hangul(ch: str) -> bool:
    """Return whether `ch` is a precomposed Hangul syllable."""
    return "\uac00" <= ch <= "\ud7a3"


def is_cjk(ch: str) -> bool:
    """Return whether `ch` is Hangul (syllable or jamo), a CJK ideograph or kana: scripts without word case."""
    o = ord(ch)
    return (0xAC00 <= o <= 0xD7A3 or 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F or 0x3040 <= o <= 0x30FF
            or 0x3400 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF)


def romanised_syllable(ch: str) -> str:
    """Return the Revised Romanization of one Hangul syllable (홍 -> hong, 길 -> gil)."""
    index = ord(ch) - 0xAC00
    return _RR_INITIALS[index // 588] + _RR_MEDIALS[index % 588 // 28] + _RR_FINALS[index % 28]


def romanised(text: str) -> tuple[str, list[int]]:
    """Return the normalised view of `text` with every Hangul syllable romanised, and each character's original index."""
    view, starts = normalise(text)
    starts = starts if starts is not None else list(range(len(text)))
    out, origin = [], []
    for ch, index in zip(view, starts):
        piece = romanised_syllable(ch) if _is_hangul(ch) else ch
        out.append(piece)
        origin.extend([index] * len(piece))
    return "".join(out), origin


def _normal_char(ch: str) -> str:
    """Return the normalised form of one character: empty, one or several characters."""
    if _is_hangul(ch):
        return ch  # NFD would split the syllable into jamo, and names are matched syllable by syllable
    if ch.lower() in _CYRILLIC:
        return _CYRILLIC[ch.lower()]
    out = []
    for part in unicodedata.normalize("NFD", unicodedata.normalize("NFKC", ch).casefold()):
        category = unicodedata.category(part)
        if category in ("Mn", "Me", "Cf"):
            continue  # diacritics, and invisible characters (soft hyphen, zero-width space) that split a name
        if part.isspace():
            part = " "
        elif category == "Pd" or part == "\u2212":
            part = "-"
        elif category == "Nd":
            part = str(unicodedata.decimal(part))
        out.append(part)
    # NFC puts back Hangul syllables that NFKC produced (㈜ -> (주)) and NFD took apart.
    return unicodedata.normalize("NFC", "".join(out))


class _CharTable(dict):
    """str.translate table that normalises each character on first sight and remembers which ones change length."""

    def __init__(self):
        super().__init__()
        self.irregular: set[str] = set()

    def __missing__(self, code: int) -> str:
        if len(self) > 100_000:
            self.clear()  # bounds memory on adversarial input; the table refills from the characters in use
        ch = chr(code)
        value = self[code] = _normal_char(ch)
        if len(value) != 1:
            self.irregular.add(ch)
        return value


_TABLE = _CharTable()


def normalise(text: str) -> tuple[str, list[int] | None]:
    """Return the normalised view of `text` and, per view character, its original index (None: one-to-one)."""
    if _PLAIN.fullmatch(text):
        return text.lower(), None  # printable ASCII and Hangul syllables: lower-casing is the whole normalisation
    if text.isascii():
        return text.lower().translate(_ASCII_SPACES), None
    view = text.translate(_TABLE)  # fills _TABLE.irregular with this text's new characters before the test below
    if len(view) == len(text) and _TABLE.irregular.isdisjoint(text):
        return view, None
    starts = []
    for index, ch in enumerate(text):
        starts.extend([index] * len(_TABLE[ord(ch)]))
    return view, starts


def original_span(start: int, end: int, starts: list[int] | None, length: int) -> tuple[int, int]:
    """Return the span of the original text that view span [start, end) came from."""
    if starts is None:
        return start, end
    last = starts[end - 1]
    # Up to the next view character's origin, so a trailing combining mark goes with its letter; a match ending
    # inside one character's expansion (ﬁ -> fi) takes that whole character.
    stop = starts[end] if end < len(starts) else length
    return starts[start], max(stop, last + 1)


def original_text(start: int, end: int, text: str, starts: list[int] | None) -> str:
    """Return the original text that view span [start, end) came from."""
    first, stop = original_span(start, end, starts, len(text))
    return text[first:stop]
