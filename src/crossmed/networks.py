"""Build the MONAI network named in conf/model/ (hydra `_target_`), and count its parameters."""

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from crossmed.errors import ConfigError


def build_network(net_cfg: DictConfig | dict) -> torch.nn.Module:
    """Return the network described by `model.net`; raise ConfigError naming the key when it cannot be built."""
    cfg = OmegaConf.create(net_cfg) if isinstance(net_cfg, dict) else net_cfg
    target = cfg.get("_target_")
    if not target:
        raise ConfigError("model.net._target_", "missing: name a network class such as monai.networks.nets.ResNet")
    try:
        net = hydra.utils.instantiate(cfg)
    except Exception as err:  # hydra wraps import and argument errors in its own exceptions
        raise ConfigError("model.net", f"cannot build {target}: {err}") from err
    if not isinstance(net, torch.nn.Module):
        raise ConfigError("model.net._target_", f"{target} did not give a torch.nn.Module")
    return net


def count_parameters(net: torch.nn.Module) -> int:
    """Return the number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
