"""Find and remove identifiers in free text: national IDs, phone and other ID numbers, e-mail, URLs, dates, names.

Matching runs on a normalised view of the text (NFKC, casefolded, diacritics dropped, dashes and spaces unified,
Hangul syllables kept whole) that remembers which original character each of its characters came from, so every
span found maps back onto the original text and the output keeps the original everywhere else.
"""

import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache

from crossmed.national_ids import find_estonian_codes, find_korean_rrns

REMOVED = "[REMOVED]"
KINDS = ("korean_rrn", "estonian_code", "email", "url", "date", "phone", "patient_name", "titled_name", "id_number")

# ---------------------------------------------------------------------------------------------------------------
# Normalised view
# ---------------------------------------------------------------------------------------------------------------

_ASCII_SPACES = str.maketrans("\t\n\r\v\f", "     ")
_PLAIN = re.compile("[ -~\uac00-\ud7a3]*")


def _is_hangul(ch: str) -> bool:
    """Return whether `ch` is a precomposed Hangul syllable."""
    return "\uac00" <= ch <= "\ud7a3"


def _is_cjk(ch: str) -> bool:
    """Return whether `ch` is Hangul (syllable or jamo), a CJK ideograph or kana: scripts without word case."""
    o = ord(ch)
    return (0xAC00 <= o <= 0xD7A3 or 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F or 0x3040 <= o <= 0x30FF
            or 0x3400 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF)


def _normal_char(ch: str) -> str:
    """Return the normalised form of one character: empty, one or several characters."""
    if _is_hangul(ch):
        return ch  # NFD would split the syllable into jamo, and names are matched syllable by syllable
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


def _normalise(text: str) -> tuple[str, list[int] | None]:
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


def _original_span(start: int, end: int, starts: list[int] | None, length: int) -> tuple[int, int]:
    """Return the span of the original text that view span [start, end) came from."""
    if starts is None:
        return start, end
    last = starts[end - 1]
    # Up to the next view character's origin, so a trailing combining mark goes with its letter; a match ending
    # inside one character's expansion (ﬁ -> fi) takes that whole character.
    stop = starts[end] if end < len(starts) else length
    return starts[start], max(stop, last + 1)


# ---------------------------------------------------------------------------------------------------------------
# Numbers, addresses and dates (patterns run on the normalised view: ASCII digits, '-' for dashes, ' ' for spaces)
# ---------------------------------------------------------------------------------------------------------------

# Groups of digits joined by one separator (space - . / or parentheses): phone numbers, IDs and national IDs
# however they are typed. Each joiner is non-empty, so matching stays linear; a leading + or (+ is added after.
_DIGIT_RUN = re.compile(r"[0-9]+(?:(?:\)[ ./-]?\(?| ?[./-] ?\(?| ?\(| )[0-9]+)*")
_RUN_LEAD = re.compile(r"(?:\(\+?|\+ ?)$")
# Words holding five digits or more (KW63034978, PID-778899). The first character comes first so the engine can
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
            continue  # short, or inside a word (KW63034978): an ID token, found separately
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


# ---------------------------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------------------------

_LATIN = r"0-9a-z\u00df-\u024f"  # letters of Latin script left after normalisation (ß, ø, đ, ł ... stay)
_NAME_SEPARATORS = re.compile(r"[\s^.,_'/\-·]+")
_TRANSLITERATION = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "õ": "o", "š": "sh", "ž": "zh", "ß": "ss",
                                  "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "Õ": "O", "Š": "Sh", "Ž": "Zh"})
_KOREAN_SURNAME_GROUPS = (
    ("Lee", "Yi", "Rhee", "Ri", "I"), ("Park", "Pak", "Bak"), ("Kim", "Gim"), ("Choi", "Choe", "Chey"),
    ("Jung", "Jeong", "Chung", "Joung"), ("Kang", "Gang"), ("Cho", "Jo"), ("Yoon", "Yun"), ("Jang", "Chang"),
    ("Lim", "Im", "Rim"), ("Oh", "O"), ("Seo", "Suh"), ("Shin", "Sin"), ("Kwon", "Gwon"), ("Hwang",), ("Ahn", "An"),
    ("Song",), ("Hong",), ("Han",), ("Jeon", "Jun", "Chun"),
)
_SURNAME_GROUP = {name.casefold(): group for group in _KOREAN_SURNAME_GROUPS for name in group}
# A family name given only in Hangul brings its romanisations too (not the reverse: 이 alone is also "this").
_SURNAME_GROUP |= {hangul: _SURNAME_GROUP[latin] for hangul, latin in (
    ("이", "lee"), ("박", "park"), ("김", "kim"), ("최", "choi"), ("정", "jung"), ("강", "kang"), ("조", "cho"),
    ("윤", "yoon"), ("장", "jang"), ("임", "lim"), ("오", "oh"), ("서", "seo"), ("신", "shin"), ("권", "kwon"),
    ("황", "hwang"), ("안", "ahn"), ("송", "song"), ("홍", "hong"), ("한", "han"), ("전", "jeon"))}


def _name_forms(name: str) -> set[str]:
    """Return the normalised search forms of one name variant: diacritics dropped, and German-style (ü -> ue)."""
    forms = set()
    for variant in (name, name.translate(_TRANSLITERATION)):
        form = _NAME_SEPARATORS.sub(" ", _normalise(variant)[0]).strip()
        if form:
            forms.add(form)
    return forms


_NAME_SEPARATOR = "[ ^.,_'/-]{0,2}"


def _term_pattern(form: str) -> tuple[str, str, str] | None:
    """Return (class, first character, regex for the rest) of one normalised name form; class 'short' needs a capital."""
    chars = form.replace(" ", "")
    # Separators inside a name (GIL-DONG, Gil Dong, gil.dong, HONG^GILDONG) match wherever the name has a letter boundary.
    sep = _NAME_SEPARATOR if len(chars) >= 3 else ""
    rest = "".join(sep + re.escape(ch) for ch in chars[1:])
    # The boundary before the name is checked after its first character is consumed ((?<!X.) looks two back), so
    # the compiled alternation starts with a plain character set that the regex engine can skip through quickly.
    if any(_is_cjk(ch) for ch in chars):
        if len(chars) == 1:
            return "main", chars, r"(?<!\w.)(?!\w)"  # a one-syllable family name (이, 김) only as a word of its own
        return "main", chars[0], rest  # anywhere: Korean attaches particles and honorifics (김민준님)
    if len(chars) == 1:
        return None  # a lone Latin letter (the surname I, O) would remove letters everywhere
    if len(chars) == 2:
        return "short", chars[0], rf"(?<![{_LATIN}].){rest}(?![{_LATIN}])"
    if len(chars) == 3:
        return "main", chars[0], rf"(?<![{_LATIN}].){rest}(?![{_LATIN}])"
    # Four letters or more also take the rest of the word: Estonian case endings (Tammele, Õunapuuga).
    return "main", chars[0], rf"(?<![{_LATIN}].){rest}[{_LATIN}]*"


@lru_cache(maxsize=4096)
def _name_patterns(names: tuple[str, ...]) -> tuple[re.Pattern | None, re.Pattern | None]:
    """Return the compiled (main, short) name patterns for a tuple of name variants (cached: a patient's files share them)."""
    buckets: dict[str, dict[str, set[tuple[int, str]]]] = {"main": {}, "short": {}}
    for name in names:
        for form in _name_forms(str(name)):
            term = _term_pattern(form)
            if term:
                kind, first, rest = term
                buckets[kind].setdefault(first, set()).add((len(form.replace(" ", "")), rest))
    compiled = []
    for kind in ("main", "short"):
        groups = []
        for first, rests in sorted(buckets[kind].items()):
            # Longest first: an alternation takes the first alternative that matches, not the longest.
            ordered = [rest for _, rest in sorted(rests, key=lambda t: (-t[0], t[1]))]
            groups.append(re.escape(first) + "(?:" + "|".join(ordered) + ")")
        compiled.append(re.compile("|".join(groups)) if groups else None)
    return compiled[0], compiled[1]


class NameSet:
    """Name patterns of several people, compiled once per person: a patient's and the staff's names recur across
    files, while the mix of people differs from file to file (one pattern for the mix would be compiled per file)."""

    def __init__(self, people: Iterable[Sequence[str]]):
        self.patterns = [_name_patterns(tuple(variants)) for variants in dict.fromkeys(tuple(p) for p in people) if variants]

    @classmethod
    def of(cls, names: "Sequence[str] | NameSet") -> "NameSet":
        """Return `names` as a NameSet (a plain sequence of variants counts as one person)."""
        return names if isinstance(names, NameSet) else cls([tuple(names)])


@lru_cache(maxsize=4096)
def person_name_variants(pn_value: str) -> tuple[str, ...]:
    """Return the search terms for a DICOM PN value: components, family/given pairs, transliterations, surname variants."""
    terms: set[str] = set()
    for group in str(pn_value or "").split("="):
        parts = [p.strip() for p in group.split("^")]
        # Prefix and suffix (Dr, Jr, III) do not identify anyone and would remove titles everywhere.
        family, given, middle = (parts + ["", "", ""])[:3]
        components = [c for c in (family, given, middle) if c]
        words = [w for c in components for w in c.split()]
        families = {family}
        group_names = _SURNAME_GROUP.get(family.casefold()) if family else None
        if group_names:
            families |= set(group_names)
        for piece in [*components, *words, *families]:
            terms.add(piece)
        if family and given:
            # Only same-script pairs: a Hangul given name after a romanised family name is not how anyone writes it.
            for fam in (f for f in families if _is_cjk(f[0]) == _is_cjk(given[0])):
                terms.update({f"{fam}{given}", f"{given}{fam}", f"{fam} {given}", f"{given} {fam}"})
    variants = set()
    for term in terms:
        for variant in (term, term.translate(_TRANSLITERATION), _strip_marks(term)):
            compact = variant.replace(" ", "")
            if len(compact) >= 2 or (len(compact) == 1 and _is_cjk(compact)):
                variants.add(variant)
    return tuple(sorted(variants, key=lambda v: (-len(v), v)))


def _strip_marks(text: str) -> str:
    """Return `text` with combining marks removed (Õunapuu -> Ounapuu), Hangul left whole."""
    return unicodedata.normalize("NFC", "".join(ch for ch in unicodedata.normalize("NFD", text)
                                                 if unicodedata.category(ch) != "Mn"))


def name_components(person_name: str) -> list[str]:
    """Return the searchable parts of a DICOM PN value: every component of every group, longest first."""
    parts = re.split(r"[=^ ]", person_name or "")
    return sorted({p.strip() for p in parts if p.strip()}, key=len, reverse=True)


# ---------------------------------------------------------------------------------------------------------------
# Names after a title or honorific (third parties: doctors, nurses, relatives)
# ---------------------------------------------------------------------------------------------------------------

_TITLE_WORDS = ("dr", "dres", "prof", "professor", "doc", "doctor", "doktor", "dokter", "mr", "mrs", "ms", "miss", "mx",
                "sir", "madam", "nurse", "sister", "rev", "arst", "ode", "hr", "pr", "prl", "harra", "proua", "preili")
_TITLE_SET = frozenset(_TITLE_WORDS)
# Ordinary words or units in lower case (90 ms, 24 hr, doc, miss): a title only when capitalised.
_TITLES_NEEDING_CAPITAL = frozenset({"mr", "mrs", "ms", "miss", "mx", "sir", "madam", "doc", "hr", "pr", "prl", "nurse",
                                     "sister", "rev"})
# DR, MR, MS in capitals are modalities and multiple sclerosis: a title only with a dot or caret (DR. TAMM, Dr^X).
_TITLES_AMBIGUOUS_IN_CAPITALS = frozenset({"dr", "mr", "ms", "mrs", "hr", "pr", "doc"})
_NOT_NAMES = frozenset({"the", "a", "an", "and", "or", "of", "on", "in", "at", "to", "for", "with", "by", "is", "was",
                        "no", "not", "see", "ja", "ei", "med"})
_WORD = r"[^\W\d_]+(?:['-][^\W\d_]+)*"
# Labels name the patient or someone else only when a colon follows (Patient: Jane Doe, nimi: Mari Tamm).
_LABEL_WORDS = ("patient", "patsient", "pt", "name", "nimi")
_TITLED = re.compile(rf"({'|'.join(sorted(_TITLE_WORDS + _LABEL_WORDS, key=len, reverse=True))})"
                     rf"(?=(\.[ ^]*|[ ^]+| ?: ?)({_WORD})(?:(\.?[ ^]+|\.)({_WORD}))?)")

_TITLE_SUFFIXES = "선생님|교수님|교수|원장님|원장|과장님|과장|님|씨"
# Shortest name first, so 김교수님 reads as 김 + 교수님, not 김교수 + 님.
_HANGUL_BEFORE_TITLE = re.compile(rf"([가-힣](?<![가-힣].)[가-힣]{{0,3}}?) ?({_TITLE_SUFFIXES})")
_HANGUL_TITLE_HINT = re.compile(r"님|씨|선생|교수|원장|과장|환자|보호자|성명|성함|이름")
_HANGUL_AFTER_TITLE = re.compile(r"(?:환자|보호자|성명|성함|이름) ?:? ?([가-힣]{2,4})(?![가-힣])")
# The commonest family names (about nine in ten Koreans): a one-syllable name before 교수/씨 must be one of them,
# and so must the first syllable of a name after 환자/보호자, where ordinary nouns follow as often as names.
_COMMON_SURNAMES = frozenset("김이박최정강조윤장임한오서신권황안송류유전홍고문양손배백허남심노하곽성차주우구민진나지엄채원천방공현함변염여추도소석선설마길연위표명기반왕금옥육인맹제모탁국어은편용예경봉")
_NOT_HANGUL_NAMES = frozenset("""
선생 교수 원장 과장 환자 보호자 고객 간호사 기사 부모 어머 아버 사모 하느 의사 선배 후배 팀장 부장 실장 사장 회장 소장 이사 대표
담당 담당자 담당의 주치의 전공의 전문의 레지던트 인턴 치료사 방사선사 상담사 직원 관리자 스승 교장 반장 간호 조교수 부교수 명예
수간호사 책임 담임 아저 아가 마음 손글 호박 수박 해바라기 여러분 고객님 연락처 연락 정보 이름 성명 성함 설명 안전 이동 이송 진술
진료 진단 진정 주소 주의 주민 주민번호 주민등록번호 조회 조치 전화 전화번호 전원 전체 전신 정상 정맥 정리 신원 신상 신분 신체 서명
서류 유의 유무 위치 위험 고지 고통 문의 문진 방문 배려 배정 성별 나이 지시 지원 도착 도움 차트 채혈 최종 추가 추적 허락 모니터 명단
기록 기본 기타 기저 인계 인적 인식 안내 안정 장기 장애 임상 강조 권유 권고 양호 오른쪽 오후 오전 우측 원칙 원내 변경 변동 동의 교육
확인 요청 본인 상태 이외 이상 이후 상담 면담 대기 호출 구두 가족 남편 배우자 남동생 여동생 모친 부친 조모 조부 손자 손녀 지인 간병인
보호 관찰 검사 영상 소견 결과 판독 촬영 처치 치료 수술 입원 외래 퇴원 경과 상황 의식 호흡 혈압 체온 통증 부위 자세 협조 거부 요구
""".split())
_NOT_NAME_ENDINGS = ("과", "실", "팀", "센터", "병원", "의원", "병동")


def _titled_latin(view: str, text: str, starts: list[int] | None) -> list[tuple[int, int]]:
    """Return view spans of the capitalised word(s) after a Latin-script title (Dr. Tamm, arst Vaher, Mr Smith)."""
    spans = []
    for m in _TITLED.finditer(view):
        if m.start() and view[m.start() - 1].isalpha():
            continue  # the end of a longer word (Addr. Smith)
        title = m.group(1)
        if title in _LABEL_WORDS and ":" not in m.group(2):
            continue
        original_title = _original_text(m.start(1), m.end(1), text, starts)
        if title in _TITLES_NEEDING_CAPITAL and not original_title[:1].isupper():
            continue
        if title in _TITLES_AMBIGUOUS_IN_CAPITALS and original_title.isupper() and m.group(2)[0] not in ".^":
            continue
        if not _name_like(m.group(3), m.start(3), text, starts):
            continue  # Prof. Dr. Lepik: the match at Dr takes Lepik
        end = m.end(3)
        second = m.group(5)
        if second and _name_like(second, m.start(5), text, starts):
            original_second = _original_text(m.start(5), m.end(5), text, starts)
            # Short capitals after a name are views and modalities (Dr. Tamm PA), not a second name.
            if not (original_second.isupper() and len(second) <= 3):
                end = m.end(5)
        spans.append((m.start(3), end))
    return spans


def _original_text(start: int, end: int, text: str, starts: list[int] | None) -> str:
    """Return the original text that view span [start, end) came from."""
    first, stop = _original_span(start, end, starts, len(text))
    return text[first:stop]


def _name_like(word: str, view_start: int, text: str, starts: list[int] | None) -> bool:
    """Return whether a word after a title reads as a name: capitalised (or in a caseless script), not a title or function word."""
    if word in _TITLE_SET or word in _NOT_NAMES:
        return False
    first = text[starts[view_start] if starts is not None else view_start]
    return first.isupper() or _is_cjk(first)


def _titled_hangul(view: str) -> list[tuple[int, int]]:
    """Return view spans of Hangul names before an honorific (박지수 선생님, 김 교수) or after 환자/보호자."""
    spans = []
    for m in _HANGUL_BEFORE_TITLE.finditer(view):
        name, suffix = m.group(1), m.group(2)
        if len(name) == 1 and (suffix == "님" or name not in _COMMON_SURNAMES):
            continue
        if name in _NOT_HANGUL_NAMES or name.endswith(_NOT_NAME_ENDINGS):
            continue
        spans.append(m.span(1))
    for m in _HANGUL_AFTER_TITLE.finditer(view):
        name = m.group(1)
        start, end = m.span(1)
        while name[-1] in "님씨" and len(name) > 2:  # the honorific is not the name
            name, end = name[:-1], end - 1
        if name[0] in _COMMON_SURNAMES and name not in _NOT_HANGUL_NAMES:
            spans.append((start, end))
    return spans


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
    return spans


# ---------------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------------

def find_identifiers(text: str, names: "Sequence[str] | NameSet") -> list[tuple[int, int, str]]:
    """Return (start, end, kind) spans of identifiers in the original `text`, ordered by start."""
    if not text:
        return []
    view, starts = _normalise(text)
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
    numbers = [(start, end, _run_kind(view[start:end])) for start, end, _ in runs]
    found += [span for span in numbers if span[2] == "phone"]
    for main, short in NameSet.of(names).patterns:
        if main is not None:
            found += [(m.start(), m.end(), "patient_name") for m in main.finditer(view)]
        if short is not None:
            for m in short.finditer(view):
                if text[starts[m.start()] if starts is not None else m.start()].isupper():
                    found.append((m.start(), m.end(), "patient_name"))
    found += [(s, e, "titled_name") for s, e in _titled_latin(view, text, starts)]
    if not text.isascii() and _HANGUL_TITLE_HINT.search(view):
        found += [(s, e, "titled_name") for s, e in _titled_hangul(view)]
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
    if starts is None:
        return sorted(accepted)
    return sorted((*_original_span(s, e, starts, len(text)), kind) for s, e, kind in accepted)


def scrub_text(text: str, names: "Sequence[str] | NameSet") -> tuple[str, list[str]]:
    """Return `text` with identifier spans (overlapping ones merged) replaced by [REMOVED], and the kinds found."""
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
