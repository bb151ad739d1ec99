"""Site de-identification keys: read from a file or the environment, never logged or written."""

import os
from pathlib import Path

from crossmed.errors import InputError

KEY_ENV = "CROSSMED_DEID_KEY"
MIN_KEY_BYTES = 16


def load_key(key_file: str | os.PathLike | None) -> bytes:
    """Return the site key from `key_file`, else from $CROSSMED_DEID_KEY; raise InputError if absent or short."""
    if key_file is not None:
        path = Path(key_file)
        if not path.is_file():
            raise InputError(path, "key file not found")
        try:
            key = path.read_bytes().strip()
        except OSError as err:
            raise InputError(path, f"key file cannot be read ({err.strerror})") from err
        source = path
    elif os.environ.get(KEY_ENV):
        key = os.environ[KEY_ENV].strip().encode()
        source = f"${KEY_ENV}"
    else:
        raise InputError("--key-file", f"no key given: pass --key-file or set {KEY_ENV}")
    if len(key) < MIN_KEY_BYTES:
        raise InputError(source, f"key is shorter than {MIN_KEY_BYTES} bytes; generate one with `crossmed keygen`")
    return key
