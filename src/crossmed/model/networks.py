"""Build the MONAI network named in conf/model/ (hydra `_target_`) for the data's task, and count its parameters."""

import inspect
import logging

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from crossmed.errors import ConfigError

log = logging.getLogger("crossmed.train")
# The argument names MONAI's networks use for input channels, outputs and dimensionality.
IN_CHANNELS = ("in_channels", "n_input_channels")
OUTPUTS = ("out_channels", "num_classes")


def fit_to_task(net_cfg: DictConfig | dict, channels: int, outputs: int, spatial_dims: int,
                image_size: tuple[int, ...] | None = None) -> dict:
    """Return `model.net` with input channels, outputs, spatial_dims (and img_size) set from the data, as the class names them."""
    cfg = OmegaConf.to_container(OmegaConf.create(net_cfg) if isinstance(net_cfg, dict) else net_cfg, resolve=True)
    target = cfg.get("_target_")
    if not target:
        raise ConfigError("model.net._target_", "missing: name a network class such as monai.networks.nets.ResNet")
    try:
        parameters = inspect.signature(hydra.utils.get_class(target)).parameters
    except Exception as err:  # hydra raises its own errors for unknown modules and classes
        raise ConfigError("model.net._target_", f"cannot import {target}: {err}") from err
    wanted = {**{name: channels for name in IN_CHANNELS}, **{name: outputs for name in OUTPUTS}, "spatial_dims": spatial_dims}
    if image_size is not None:  # transformers size their position embedding from the image
        wanted["img_size"] = list(image_size)
    passes_on = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())  # e.g. SEResNet50(**kwargs)
    for name, value in wanted.items():
        if (name in parameters or (passes_on and name in cfg)) and cfg.get(name) != value:
            if name in cfg:
                log.info("model.net.%s: %s -> %s (from the data)", name, cfg[name], value)
            cfg[name] = value
    return cfg


LAYER_SPECIFIERS = ("norm", "act")  # MONAI layer arguments given as a name or a (name, {arguments}) pair


def build_network(net_cfg: DictConfig | dict) -> torch.nn.Module:
    """Return the network described by `model.net`; raise ConfigError naming the key when it cannot be built."""
    cfg = OmegaConf.create(net_cfg) if isinstance(net_cfg, dict) else net_cfg
    target = cfg.get("_target_")
    if not target:
        raise ConfigError("model.net._target_", "missing: name a network class such as monai.networks.nets.ResNet")
    # YAML has no tuple, and MONAI's layer factories take a (name, {arguments}) pair: pass those arguments as tuples.
    layers = {key: tuple(OmegaConf.to_container(value)) for key in LAYER_SPECIFIERS
              if OmegaConf.is_list(value := cfg.get(key)) and len(value) == 2 and isinstance(value[0], str)}
    try:
        if layers:
            rest = OmegaConf.create({k: v for k, v in cfg.items() if k not in layers})
            net = hydra.utils.instantiate(rest, _partial_=True)(**layers)
        else:
            net = hydra.utils.instantiate(cfg)
    except Exception as err:  # hydra wraps import and argument errors in its own exceptions
        raise ConfigError("model.net", f"cannot build {target}: {err}") from err
    if not isinstance(net, torch.nn.Module):
        raise ConfigError("model.net._target_", f"{target} did not give a torch.nn.Module")
    return net


def count_parameters(net: torch.nn.Module) -> int:
    """Return the number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


class ViTClassifier(torch.nn.Module):
    """MONAI's ViT as a classifier that returns logits only (ViT returns logits and hidden states, and a Tanh head by default)."""

    def __init__(self, **vit_args):
        super().__init__()
        from monai.networks.nets import ViT

        self.vit = ViT(**{**vit_args, "classification": True, "post_activation": None})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the class logits for a batch of images."""
        return self.vit(x)[0]
