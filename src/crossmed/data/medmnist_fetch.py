"""Fetch an official MedMNIST file when the machine is online, checked against its published MD5."""

import logging
import urllib.error
import urllib.request
from pathlib import Path

from crossmed.data.medmnist import file_md5, official_file_name, official_url, subset_info
from crossmed.errors import InputError
from crossmed.files import atomic_path

log = logging.getLogger("crossmed.fetch")
CHUNK = 1 << 20


def fetch_medmnist(subset: str, size: int, target: str | Path, url: str | None = None, timeout: float = 30.0) -> Path:
    """Download the official file of `subset` at `size` to `target` (atomically), refusing it unless its MD5 matches."""
    info, target = subset_info(subset), Path(target)
    published = info.md5.get(size)
    if published is None:
        official_file_name(subset, size)  # raises ConfigError naming the sizes the subset comes in
    url = url or official_url(subset, size)
    log.info("fetching %s (%s at %d px) to %s", url, subset, size, target)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_path(target) as tmp:
            total, done = int(response.headers.get("Content-Length") or 0), 0
            with open(tmp, "wb") as fh:
                for block in iter(lambda: response.read(CHUNK), b""):
                    fh.write(block)
                    done += len(block)
                    if total and done % (64 * CHUNK) < CHUNK:
                        log.info("%s: %d of %d MiB", target.name, done >> 20, total >> 20)
            md5 = file_md5(tmp)
            if md5 != published:
                raise InputError(url, f"MD5 {md5} differs from the published {published}; nothing was written")
    except (urllib.error.URLError, OSError) as err:
        raise InputError(target, f"not found and could not be fetched ({err}); download {official_file_name(subset, size)} "
                                 f"from {official_url(subset, size)} and save it as {target}, or pass -S data.path=FILE") from err
    log.info("wrote %s (MD5 %s, as published)", target, published)
    return target
