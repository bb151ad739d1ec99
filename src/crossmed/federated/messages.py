"""What travels between the coordinator and the sites: record and config names, the study config, message sizes (no torch here:
a site's join reply is answered without importing it)."""

import json

from omegaconf import DictConfig, OmegaConf

ARRAYS, CONFIG, METRICS, SITE = "arrays", "config", "metrics", "site"  # record names in a message's RecordDict
STUDY_CONFIG_KEY, WORK_DIR_KEY = "study-config", "work-dir"           # run config (the Flower app's pyproject)
SITE_KEY, DATA_DIR_KEY = "site", "data-dir"                           # a site process's node config
WEIGHTS = "weights"                                                   # the one array of an ArrayRecord
WEIGHT_KEY = "num-examples"                                           # FedAvg weights a site's update by its training images
UNIT_WEIGHT_KEY = "unit-weight"                                       # 1 from every site: equal weights (differential privacy)


def study_config(run_config) -> DictConfig:
    """Return the study config the coordinator put in the run config."""
    return OmegaConf.create(json.loads(str(run_config[STUDY_CONFIG_KEY])))


def encode_study_config(cfg) -> str:
    """Return the resolved study config as the JSON string the run config carries."""
    return json.dumps(OmegaConf.to_container(cfg, resolve=True), sort_keys=True, ensure_ascii=False)


def content_bytes(message) -> int:
    """Return the bytes a message's records take (weights, metrics, config), as Flower counts them."""
    if not message.has_content():
        return 0
    return sum(record.count_bytes() for record in message.content.values())
