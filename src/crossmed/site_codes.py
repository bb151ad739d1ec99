"""Site codes and pseudonym prefixes become folder and file names, so only a small safe alphabet is accepted.

A site name read from a manifest (`../../..`) or typed on the command line must never steer a write
outside the output folder.
"""

import re

from crossmed.errors import ConfigError

SITE_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
PATIENT_PREFIX = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9_-]{0,15})?")


def check_site_code(code: str, where: str) -> str:
    """Return `code` when it is a usable site code (letters, digits, '-', '_'; up to 32); else raise ConfigError naming `where`."""
    if not isinstance(code, str) or not SITE_CODE.fullmatch(code):
        raise ConfigError(where, f"site code {code!r} is not usable: letters, digits, '-' and '_' only, "
                                 "starting with a letter or digit, at most 32 characters (it names folders)")
    return code


def check_patient_prefix(prefix: str, where: str) -> str:
    """Return `prefix` when it is a usable pseudonym prefix (as a site code, up to 16, may be empty); else raise ConfigError."""
    if not isinstance(prefix, str) or not PATIENT_PREFIX.fullmatch(prefix):
        raise ConfigError(where, f"patient prefix {prefix!r} is not usable: letters, digits, '-' and '_' only, "
                                 "starting with a letter or digit, at most 16 characters (pseudonyms name folders)")
    return prefix
