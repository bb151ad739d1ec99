"""Keyed pseudonyms (HMAC-SHA256): the same input and key give the same value, another key an unlinkable one."""

import base64
import hashlib
import hmac

from crossmed.errors import ConfigError


class Pseudonymizer:
    """Derives patient IDs, UIDs, date offsets and references to source files from one site key."""

    def __init__(self, key: bytes, patient_prefix: str = "", max_date_shift_days: int = 365):
        if int(max_date_shift_days) < 1:
            # 0 would divide by zero and a negative bound leaves real dates while files say MODIFIED
            raise ConfigError("max_date_shift_days", f"must be at least 1 (got {max_date_shift_days}); dates move back "
                                                     "1..N days per patient")
        self._key = key
        self.patient_prefix = patient_prefix
        self.max_date_shift_days = int(max_date_shift_days)

    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self._key, f"{kind}\0{value}".encode("utf-8", "surrogateescape"), hashlib.sha256).digest()

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

    def source_reference(self, relative_path: str) -> str:
        """Return the pseudonymous name of a source file for what is shared (the site-only record maps it back)."""
        return "src-" + base64.b32encode(self._digest("source", relative_path)).decode()[:16].lower()

    def key_check(self) -> str:
        """Return a short check value of the key, so an output folder can tell whether a later run used the same key."""
        return self._digest("key check", "crossmed")[:8].hex()
