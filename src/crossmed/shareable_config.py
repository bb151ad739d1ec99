"""What of a study's configuration may leave the site: everything but where the site keeps raw data, keys and records.

Those paths are the site's own (a hospital export folder can be named after a patient) and mean nothing
elsewhere, so MLflow params, the validation report and the data card show them as SITE_LOCAL.
"""

from omegaconf import DictConfig, OmegaConf

SITE_LOCAL = "(site-local path, not recorded)"
SITE_LOCAL_KEYS = ("data.path", "data.input", "data.key_dir", "deid.key_dir", "deid.site_records", "paths.raw", "paths.site")


def shareable(cfg: DictConfig | dict) -> DictConfig:
    """Return a resolved copy of `cfg` with every site-local path replaced by SITE_LOCAL."""
    copy = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg)
    for key in SITE_LOCAL_KEYS:
        if OmegaConf.select(copy, key) is not None:
            OmegaConf.update(copy, key, SITE_LOCAL)
    return copy
