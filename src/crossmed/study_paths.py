"""The files stages hand each other, as `paths.*` in conf/config.yaml: checks on how they nest."""

from pathlib import Path, PurePosixPath

from crossmed.errors import ConfigError


def within(cfg, key: str, folder_key: str) -> Path:
    """Return paths.<key> relative to the output folder paths.<folder_key>; ConfigError when it lies outside it."""
    path, folder = PurePosixPath(str(cfg.paths[key])), PurePosixPath(str(cfg.paths[folder_key]))
    try:
        return Path(path.relative_to(folder))
    except ValueError:
        raise ConfigError(f"paths.{key}", f"'{path}' must lie inside paths.{folder_key} ('{folder}'), "
                                          f"the folder the stage writes whole") from None


FOLDERS = ("raw", "site", "deidentified", "processed", "models", "experiments")  # the others are derived from these


def folder_overrides(root: str | Path, folders: tuple[str, ...] = FOLDERS) -> list[str]:
    """Return Hydra overrides putting each of `folders` under `root` (root/raw, root/models, ...), so the files derived
    from them (paths.checkpoint, paths.metrics, ...) follow when the config is composed."""
    return [f"paths.{key}='{Path(root) / key}'" for key in folders]  # quoted: any file-name characters stay one value
