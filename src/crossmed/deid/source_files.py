"""List the files of a source folder for de-identification, refusing what must not be read rather than skipping it.

Symbolic links to folders and unreadable folders are not entered, links to files outside the folder are
not followed, and special files are not read; each becomes a refusal the steward sees, never a silent gap.
"""

import os
from pathlib import Path

from crossmed.deid.refusals import Refusal


def _relative(path: Path, src: Path) -> str:
    return path.relative_to(src).as_posix()


def list_source_files(src: Path) -> tuple[list[tuple[Path, str]], list[tuple[str, Refusal]]]:
    """Return (path, relative path) of every regular file under `src`, and (relative path, refusal) of what is not read."""
    inside = src.resolve()
    jobs: list[tuple[Path, str]] = []
    refused: list[tuple[str, Refusal]] = []

    def folder_error(err: OSError) -> None:
        path = Path(err.filename)
        refused.append((_relative(path, src), Refusal(path, "skipped_folder", f"cannot read folder ({err.strerror})")))

    for root, folders, files in os.walk(src, onerror=folder_error):
        root = Path(root)
        folders.sort()
        for name in folders:
            if (root / name).is_symlink():
                refused.append((_relative(root / name, src),
                                Refusal(root / name, "skipped_folder", "symbolic link to a folder: not followed")))
        for name in sorted(files):
            path = root / name
            relative = _relative(path, src)
            if path.is_symlink() and not path.resolve().is_relative_to(inside):
                refused.append((relative, Refusal(path, "link_outside_source", "symbolic link to a file outside the source folder")))
            elif not path.is_file():
                refused.append((relative, Refusal(path, "not_regular_file", "not a regular file (device, pipe, socket or broken link)")))
            else:
                jobs.append((path, relative))
    return sorted(jobs, key=lambda job: job[1]), sorted(refused, key=lambda item: item[0])
