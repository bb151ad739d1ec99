"""Everything one de-identification run is configured with, checked once so no bad value weakens it silently."""

from dataclasses import dataclass, field

from crossmed.deid.profile import STANDARD_REVISION, Profile
from crossmed.deid.pseudonyms import Pseudonymizer
from crossmed.errors import ConfigError
from crossmed.limits import InputLimits
from crossmed.site_codes import check_patient_prefix


@dataclass(frozen=True)
class DeidSettings:
    """Profile, site key, pseudonym prefix, date shift bound, burned-in policy, workers and input limits."""

    profile: Profile
    key: bytes
    patient_prefix: str = ""
    max_date_shift_days: int = 365
    allow_burned_in: bool = False
    workers: int = 1
    limits: InputLimits = field(default_factory=InputLimits)

    def __post_init__(self):
        check_patient_prefix(self.patient_prefix, "patient_prefix")
        if int(self.workers) < 1:
            raise ConfigError("workers", f"must be at least 1 (got {self.workers})")
        self.pseudonymizer()  # refuses a date shift bound below 1

    def pseudonymizer(self) -> Pseudonymizer:
        """Return the pseudonymizer of this site key, prefix and date shift bound."""
        return Pseudonymizer(self.key, self.patient_prefix, self.max_date_shift_days)

    def output_signature(self) -> dict:
        """Return what must match for a later run to add files to the same output folder (no secret in it)."""
        return {"key_check": self.pseudonymizer().key_check(), "profile": STANDARD_REVISION,
                "options": list(self.profile.options), "patient_prefix": self.patient_prefix,
                "max_date_shift_days": int(self.max_date_shift_days)}


def settings_from_config(deid_cfg, key: bytes, patient_prefix: str) -> DeidSettings:
    """Return the settings the `deid` config group describes, for one site's key and pseudonym prefix."""
    from crossmed.deid.profile import load_profile

    if deid_cfg.profile != "basic":
        raise ConfigError("deid.profile", f"unknown profile '{deid_cfg.profile}' (known: basic)")
    if int(deid_cfg.max_date_shift_days) < 1:
        raise ConfigError("deid.max_date_shift_days", f"must be at least 1 (got {deid_cfg.max_date_shift_days})")
    if not float(deid_cfg.max_file_mb) > 0 or not float(deid_cfg.max_decoded_mb) > 0:
        raise ConfigError("deid.max_file_mb", "size limits (max_file_mb, max_decoded_mb) must be positive")
    limits = InputLimits.from_megabytes(float(deid_cfg.max_file_mb), float(deid_cfg.max_decoded_mb))
    return DeidSettings(load_profile(deid_cfg.options), key, patient_prefix, int(deid_cfg.max_date_shift_days),
                        bool(deid_cfg.allow_burned_in), int(deid_cfg.workers), limits)
