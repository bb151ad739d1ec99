"""params.yaml as DVC composes it from conf/: write it, or check that the committed one agrees."""

import re
import tempfile
from pathlib import Path

import yaml

from crossmed.errors import ConfigError


def compose_params(conf_dir: str | Path = "conf", config_name: str = "config", overrides: list[str] | None = None) -> dict:
    """Return the composed, resolved config exactly as `dvc exp run` writes it to params.yaml."""
    from dvc.utils.hydra import compose_and_dump

    conf_dir = Path(conf_dir).resolve()
    if not (conf_dir / f"{config_name}.yaml").is_file():
        raise ConfigError("hydra.config_dir", f"{conf_dir / (config_name + '.yaml')} not found")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "params.yaml"
        try:
            compose_and_dump(out, str(conf_dir), None, config_name, str(conf_dir.parent), overrides or [])
        except Exception as err:  # Hydra's composition errors carry the schema's message on their cause
            raise _composition_error(err) from err
        return yaml.safe_load(out.read_text(encoding="utf-8"))


def _composition_error(err: Exception) -> Exception:
    """Return a ConfigError naming the key a schema refused (crossmed.config), or `err` itself when none is named."""
    cause = err.__cause__ or err
    found = re.search(r"full_key: (\S+)", str(cause))
    if not found:
        return err
    return ConfigError(found.group(1), str(cause).split("\n")[0].strip())


def write_params(path: str | Path = "params.yaml", conf_dir: str | Path = "conf") -> dict:
    """Write params.yaml from the default composition of conf/ (byte-identical to DVC's) and return it."""
    from dvc.utils.hydra import compose_and_dump

    conf_dir = Path(conf_dir).resolve()
    compose_and_dump(Path(path), str(conf_dir), None, "config", str(conf_dir.parent), [])
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def params_differences(path: str | Path = "params.yaml", conf_dir: str | Path = "conf") -> list[str]:
    """Return the dotted keys where params.yaml and the default composition of conf/ differ."""
    committed = yaml.safe_load(Path(path).read_text(encoding="utf-8")) if Path(path).is_file() else {}
    return _diff(committed or {}, compose_params(conf_dir))


def _diff(a, b, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = list(dict.fromkeys([*a, *b]))
        return [d for k in keys for d in _diff(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]
