"""Check an exported MONAI bundle with MONAI's own verify_metadata, offline, against a schema file the user has."""

import json
import logging
import os
from pathlib import Path

from crossmed.errors import InputError

log = logging.getLogger("crossmed.export")
SCHEMA_ENV = "CROSSMED_BUNDLE_SCHEMA"


def verify_bundle(bundle: str | Path, schema: str | Path | None) -> Path:
    """Verify bundle/configs/metadata.json against `schema` (else $CROSSMED_BUNDLE_SCHEMA) with MONAI; return the
    metadata path. Without a schema file, raise InputError saying where to get it: nothing is downloaded or created."""
    metadata = Path(bundle) / "configs" / "metadata.json"
    if not metadata.is_file():
        raise InputError(metadata, "no bundle metadata; export with 'bundle' in export.formats (dvc repro export)")
    url = json.loads(metadata.read_text()).get("schema", "the URL in the metadata's 'schema' field")
    schema = schema or os.environ.get(SCHEMA_ENV)
    if not schema or not Path(schema).is_file():
        raise InputError(schema or "--schema", f"no schema file to check against (MONAI would download it and fails "
                                               f"offline): fetch {url} once on a machine with internet and pass it "
                                               f"with --schema FILE (or ${SCHEMA_ENV})")
    from monai.bundle import verify_metadata

    try:  # the file exists, so MONAI reads it and downloads nothing
        verify_metadata(meta_file=str(metadata), filepath=str(schema), create_dir=False)
    except ValueError as err:
        raise InputError(metadata, f"does not pass MONAI's bundle schema: {err}") from None
    log.info("verified %s against %s", metadata, schema)
    return metadata
