"""Keyed pseudonyms (HMAC-SHA256): the same input and key give the same value, another key an unlinkable one."""

import base64
import hashlib
import hmac


class Pseudonymizer:
    """Derives patient IDs, UIDs and date offsets from one site key."""

    def __init__(self, key: bytes, patient_prefix: str = "", max_date_shift_days: int = 365):
        self._key = key
        self.patient_prefix = patient_prefix
        self.max_date_shift_days = max_date_shift_days

    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self._key, f"{kind}\0{value}".encode("utf-8"), hashlib.sha256).digest()

    def patient_id(self, real_id: str) -> str:
        """Return the pseudonymous patient ID for a real one (prefix + 16 base32 characters)."""
        code = base64.b32encode(self._digest("patient", real_id.strip())).decode()[:16]
        return f"{self.patient_prefix}{code}"

    def uid(self, real_uid: str) -> str:
        """Return a UID under the 2.25 root derived from a real UID."""
        return "2.25." + str(int.from_bytes(self._digest("uid", real_uid.strip().rstrip("\0"))[:16], "big"))

    def date_offset_days(self, real_patient_id: str) -> int:
        """Return the patient's date shift in days, between -max_date_shift_days and -1."""
        value = int.from_bytes(self._digest("date", real_patient_id.strip())[:8], "big")
        return -(1 + value % self.max_date_shift_days)
