"""Person names in free text: the search forms of known people's names, and names after a title or honorific.

Known names (the patient's, the staff's) become patterns over the normalised view that allow separators,
transliterations and Korean surname romanisations; unknown third parties are found by the title before their
name (Dr. Tamm, arst Vaher) or the honorific after it (박지수 선생님).
"""

import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache

from crossmed.deid.text_normalise import is_cjk, normalise, original_text, romanised_syllable

# ---------------------------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------------------------

# A letter or digit of any script: a category, which the regex compiler builds at once, where a character set
# repeated in every name's alternative made compiling a patient's patterns the slowest step of de-identification.
_WORD_CHAR = r"[^\W_]"
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
        form = _NAME_SEPARATORS.sub(" ", normalise(variant)[0]).strip()
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
    if any(is_cjk(ch) for ch in chars):
        if len(chars) == 1:
            return "main", chars, r"(?<!\w.)(?!\w)"  # a one-syllable family name (이, 김) only as a word of its own
        return "main", chars[0], rest  # anywhere: Korean attaches particles and honorifics (김민준님)
    if len(chars) == 1:
        return None  # a lone Latin letter (the surname I, O) would remove letters everywhere
    if len(chars) == 2:
        return "short", chars[0], rf"(?<!{_WORD_CHAR}.){rest}(?!{_WORD_CHAR})"
    if len(chars) == 3 and chars in _SURNAME_GROUP:
        return "main", chars[0], rf"(?<!{_WORD_CHAR}.){rest}(?!{_WORD_CHAR})"  # Kim, Lee, Han: no endings (Hans, Leeds)
    # Other names of three letters or more also take the rest of the word: Estonian case endings (Otsale, Tammele).
    return "main", chars[0], rf"(?<!{_WORD_CHAR}.){rest}{_WORD_CHAR}*"


@lru_cache(maxsize=4096)
def _name_patterns(names: tuple[str, ...]) -> tuple[tuple[re.Pattern, ...], tuple[re.Pattern, ...]]:
    """Return (main, short) patterns for many names as one alternation each: built once for a whole table's names."""
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
        compiled.append((re.compile("|".join(groups)),) if groups else ())
    return compiled[0], compiled[1]


@lru_cache(maxsize=65536)
def _form_pattern(form: str) -> tuple[str, re.Pattern] | None:
    """Return (class, compiled pattern) of one normalised name form (cached: names recur across patients and staff)."""
    term = _term_pattern(form)
    if term is None:
        return None
    kind, first, rest = term
    return kind, re.compile(re.escape(first) + "(?:" + rest + ")")


@lru_cache(maxsize=4096)
def _person_patterns(names: tuple[str, ...]) -> tuple[tuple[re.Pattern, ...], tuple[re.Pattern, ...]]:
    """Return (main, short) patterns of one person's name variants, one per form, longest form first."""
    found: dict[str, dict[str, re.Pattern]] = {"main": {}, "short": {}}
    for name in names:
        for form in _name_forms(str(name)):
            if compiled := _form_pattern(form):
                found[compiled[0]][form] = compiled[1]
    return tuple(tuple(p for _, p in sorted(found[kind].items(), key=lambda item: -len(item[0]))) for kind in ("main", "short"))


class NameSet:
    """Name patterns of several people. Per person, one small pattern per name form, each compiled once for every
    file and patient that shares it (Kim, the staff); for a table's many names (`combined`), a few alternations."""

    def __init__(self, people: Iterable[Sequence[str]], combined: bool = False):
        build = _name_patterns if combined else _person_patterns
        self.patterns = [build(tuple(variants)) for variants in dict.fromkeys(tuple(p) for p in people) if variants]

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
        if given and all(_is_syllable(ch) for ch in given):  # a Korean given name, also as people romanise it
            romanised_given = _romanisations(given)
            terms.update(romanised_given)
            for fam in (f for f in families if not is_cjk(f[0])):
                terms.update(f"{fam} {g}" for g in romanised_given)
        if family and given:
            # Only same-script pairs: a Hangul given name after a romanised family name is not how anyone writes it.
            for fam in (f for f in families if is_cjk(f[0]) == is_cjk(given[0])):
                terms.update({f"{fam}{given}", f"{given}{fam}", f"{fam} {given}", f"{given} {fam}"})
    variants = set()
    for term in terms:
        for variant in (term, term.translate(_TRANSLITERATION), _strip_marks(term), *_cyrillic_romanisations(term)):
            compact = variant.replace(" ", "")
            if len(compact) >= 2 or (len(compact) == 1 and is_cjk(compact)):
                variants.add(variant)
    return tuple(sorted(variants, key=lambda v: (-len(v), v)))


# Estonian (EVS 8) romanisation of Cyrillic: the normalised view reads Cyrillic the scholarly way (ya, zh, kh), and a
# Russian speaker's name in an Estonian record is spelt Jakovlev, Žukov, Hodorkovski.
_CYRILLIC_EVS = dict(zip("абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
                         ["a", "b", "v", "g", "d", "e", "jo", "ž", "z", "i", "i", "k", "l", "m", "n", "o", "p", "r", "s", "t",
                          "u", "f", "h", "ts", "tš", "š", "štš", "", "õ", "", "e", "ju", "ja"]))
_J_TO_Y = re.compile(r"j(?=[aeou])", re.IGNORECASE)
_Y_TO_J = re.compile(r"y(?=[aeou])", re.IGNORECASE)


def _cyrillic_romanisations(term: str) -> set[str]:
    """Return the other spellings of a name between Cyrillic and Latin script: Яковлев -> Jakovlev; Jakovlev ->
    Yakovlev (how Иванов-style text reads in the normalised view), and back."""
    if any("\u0400" <= ch <= "\u04ff" for ch in term):
        evs = "".join(_CYRILLIC_EVS.get(ch.lower(), ch) for ch in term)
        spellings = {evs, evs.replace("ii", "i")}  # Юрий: Jurii and Juri
        return {form.capitalize() for spelling in spellings for form in (spelling, _strip_marks(spelling))}
    if not term or is_cjk(term[0]):
        return set()
    return {_J_TO_Y.sub(lambda m: "Y" if m.group().isupper() else "y", term),
            _Y_TO_J.sub(lambda m: "J" if m.group().isupper() else "j", term)} - {term}


_ALTERNATE_INITIALS = {"g": "k", "d": "t", "b": "p", "j": "ch"}  # Revised Romanization beside McCune-Reischauer


def _is_syllable(ch: str) -> bool:
    return "\uac00" <= ch <= "\ud7a3"


def _romanisations(hangul: str) -> set[str]:
    """Return the ways a Hangul given name is romanised: Revised Romanization, and with k/t/p/ch syllable starts."""
    options = [{romanised_syllable(ch)} for ch in hangul]
    for choices in options:
        syllable = next(iter(choices))
        for plain, alternate in _ALTERNATE_INITIALS.items():
            if syllable.startswith(plain) and not syllable.startswith(plain * 2):
                choices.add(alternate + syllable[len(plain):])
    forms = {""}
    for choices in options[:4]:  # four syllables at most: the variants multiply
        forms = {form + choice for form in forms for choice in choices}
    return {form.capitalize() for form in forms}


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
                "sir", "madam", "nurse", "sister", "rev", "arst", "ode", "hr", "pr", "prl", "harra", "proua", "preili",
                "by")  # read by, signed by, dictated by: a capitalised name follows
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
_LABEL_WORDS = ("patient", "patsient", "pt", "name", "nimi", "signed", "signature", "reader", "reporter", "radiologist",
                "physician", "referrer", "allkiri", "radioloog")
_TITLED = re.compile(rf"({'|'.join(sorted(_TITLE_WORDS + _LABEL_WORDS, key=len, reverse=True))})"
                     rf"(?=(\.[ ^]*|[ ^]+| ?: ?)({_WORD})(?:(\.?[ ^]+|\.)({_WORD}))?)")

_TITLE_SUFFIXES = "선생님|교수님|교수|원장님|원장|과장님|과장|님|씨"
# Shortest name first, so 김교수님 reads as 김 + 교수님, not 김교수 + 님.
_HANGUL_BEFORE_TITLE = re.compile(rf"([가-힣](?<![가-힣].)[가-힣]{{0,3}}?) ?({_TITLE_SUFFIXES})")
_HANGUL_TITLE_HINT = re.compile(r"님|씨|선생|교수|원장|과장|환자|보호자|성명|성함|이름|판독의|담당의|주치의|판독자|서명")
_HANGUL_AFTER_TITLE = re.compile(r"(?:환자|보호자|성명|성함|이름|판독의|담당의|주치의|판독자|서명) ?:? ?([가-힣]{2,4})(?![가-힣])")
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
        original_title = original_text(m.start(1), m.end(1), text, starts)
        if title in _TITLES_NEEDING_CAPITAL and not original_title[:1].isupper():
            continue
        if title in _TITLES_AMBIGUOUS_IN_CAPITALS and original_title.isupper() and m.group(2)[0] not in ".^":
            continue
        if not _name_like(m.group(3), m.start(3), text, starts):
            continue  # Prof. Dr. Lepik: the match at Dr takes Lepik
        if title == "by" and len(m.group(3)) <= 3 and original_text(m.start(3), m.end(3), text, starts).isupper():
            continue  # evaluated by CT, seen by MR: a modality, not a name
        end = m.end(3)
        second = m.group(5)
        if second and _name_like(second, m.start(5), text, starts):
            original_second = original_text(m.start(5), m.end(5), text, starts)
            # Short capitals after a name are views and modalities (Dr. Tamm PA), not a second name.
            if not (original_second.isupper() and len(second) <= 3):
                end = m.end(5)
        spans.append((m.start(3), end))
    return spans


def _name_like(word: str, view_start: int, text: str, starts: list[int] | None) -> bool:
    """Return whether a word after a title reads as a name: capitalised (or in a caseless script), not a title or function word."""
    if word in _TITLE_SET or word in _NOT_NAMES:
        return False
    first = text[starts[view_start] if starts is not None else view_start]
    return first.isupper() or is_cjk(first)


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


def titled_name_spans(view: str, text: str, starts: list[int] | None) -> list[tuple[int, int]]:
    """Return view spans of names after a Latin-script title, then of Hangul names beside an honorific."""
    spans = _titled_latin(view, text, starts)
    if not text.isascii() and _HANGUL_TITLE_HINT.search(view):
        spans += _titled_hangul(view)
    return spans
