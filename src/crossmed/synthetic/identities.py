"""Fictitious patients, staff and free text for each partner site, in the site's own script."""

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from crossmed.national_ids import make_estonian_code, make_korean_rrn

KOREAN_SURNAMES = [("Kim", "김"), ("Lee", "이"), ("Park", "박"), ("Choi", "최"), ("Jung", "정"), ("Kang", "강"), ("Cho", "조"), ("Yoon", "윤")]
KOREAN_GIVEN = [("Minjun", "민준"), ("Seoyeon", "서연"), ("Jihoon", "지훈"), ("Haeun", "하은"), ("Doyoon", "도윤"), ("Sua", "수아"), ("Yejun", "예준"), ("Jia", "지아")]
ESTONIAN_SURNAMES = ["Tamm", "Saar", "Sepp", "Mägi", "Kask", "Kukk", "Rebane", "Pärn", "Kõiv", "Lõhmus", "Männik", "Õunapuu", "Šmidt"]
ESTONIAN_GIVEN_MALE = ["Jüri", "Tõnu", "Märt", "Andres", "Priit", "Jürgen"]
ESTONIAN_GIVEN_FEMALE = ["Mari", "Kärt", "Liis", "Ülle", "Õie", "Kadri"]


@dataclass(frozen=True)
class Patient:
    """One fictitious patient: identifiers and characteristics as a hospital system holds them."""

    site: str
    patient_id: str
    name: str  # DICOM PN value, components separated by '=' (alphabetic=ideographic/phonetic)
    family_name: str
    given_name: str
    sex: str
    birth_date: date
    national_id: str
    phone: str


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def make_patient(rng: np.random.Generator, site: str, language: str, index: int) -> Patient:
    """Return a fictitious patient of `site` with a name and national ID in the site's language."""
    male = bool(rng.integers(2))
    birth = date(1940, 1, 1) + timedelta(days=int(rng.integers(0, 365 * 62)))
    serial = int(rng.integers(0, 100000))
    if language == "ko":
        (fam_latin, fam_ko), (giv_latin, giv_ko) = _pick(rng, KOREAN_SURNAMES), _pick(rng, KOREAN_GIVEN)
        name = f"{fam_latin}^{giv_latin}={fam_ko}^{giv_ko}"
        family, given = fam_ko, giv_ko
        national_id = make_korean_rrn(birth, male, serial)
        phone = f"010-{rng.integers(1000, 9999)}-{rng.integers(1000, 9999)}"
        patient_id = f"KW{rng.integers(10**7, 10**8)}"
    elif language == "et":
        family = _pick(rng, ESTONIAN_SURNAMES)
        given = _pick(rng, ESTONIAN_GIVEN_MALE if male else ESTONIAN_GIVEN_FEMALE)
        name = f"{family}^{given}"
        national_id = make_estonian_code(birth, male, serial)
        phone = f"+372 5{rng.integers(100, 999)} {rng.integers(1000, 9999)}"
        patient_id = f"TYK{index:05d}{rng.integers(10, 99)}"
    else:
        raise ValueError(f"no fictitious identities for language '{language}' (known: ko, et)")
    return Patient(site, patient_id, name, family, given, "M" if male else "F", birth, national_id, phone)


def clinical_comment(rng: np.random.Generator, patient: Patient, language: str) -> str:
    """Return a free-text comment of the kind clinicians type, sometimes holding the patient's identifiers."""
    kind = int(rng.integers(4))
    if language == "ko":
        options = [
            "추적 검사 요망",
            f"환자 {patient.family_name}{patient.given_name} 주민등록번호 {patient.national_id}",
            f"보호자 연락처 {patient.phone}",
            f"Follow-up for {patient.name.split('=')[0].replace('^', ' ')}",
        ]
    else:
        options = [
            "Kontrolluuring 6 kuu pärast",
            f"Patsient {patient.given_name} {patient.family_name}, isikukood {patient.national_id}",
            f"Kontakt telefon {patient.phone}",
            f"Võrdle eelmise uuringuga, {patient.family_name}",
        ]
    return options[kind]
