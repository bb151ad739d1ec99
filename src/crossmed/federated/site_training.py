"""What a site does with the weights a round sends: train local epochs on its own data, or validate them; statistics only out.

Everything here is a function of (study config, the site's data, the incoming weights, the round), so a rerun of a
round (after a kill) computes the same weights: the round's random streams are seeded from the study seed, the site
and the round. Each local round starts a fresh optimiser at the point of the learning-rate schedule where the
centralised run would be after the same number of epochs.
"""

import hashlib
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from crossmed.devices import resolve_device, seed_everything
from crossmed.federated.site_data import load_site_data
from crossmed.model.networks import build_network, fit_to_task
from crossmed.model.probabilities import mean_auc, mean_log_loss, predict_probabilities
from crossmed.reproducibility import in_effect
from crossmed.training.loaders import make_loader
from crossmed.training.loop import TrainingState, TrainSettings
from crossmed.training.objectives import balanced_weights

log = logging.getLogger("crossmed.federated.site")


def round_seed(seed: int, site: str, round_number: int) -> int:
    """Return the seed of one site's round: the same on a rerun, different for every site and round."""
    digest = hashlib.sha256(f"{seed}/{site}/{round_number}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass(frozen=True)
class RoundOrder:
    """What the coordinator asks of a round: its number, the local epochs, the whole schedule's length, FedProx's mu."""

    round_number: int
    local_epochs: int
    total_epochs: int
    proximal_mu: float = 0.0


class SiteTrainer:
    """One site's data, network recipe and training settings, as the study config and the site's folder give them."""

    def __init__(self, cfg, site: str, data_dir: str | Path):
        self.cfg, self.site, self.folder = cfg, site, Path(data_dir)
        self.data = load_site_data(data_dir, site)
        self.task = self.data.task
        self.train, self.val = self.data.split("train"), self.data.split("val")
        self.device = resolve_device(str(cfg.train.device))
        self.arithmetic = in_effect(cfg)
        self.net_cfg = fit_to_task(cfg.model.net, self.task.channels, self.task.outputs, self.task.spatial_dims,
                                   tuple(self.data.images.shape[2:]))

    def template(self) -> dict[str, torch.Tensor]:
        """Return the network's state dict as built (names, shapes and types the weights arrive in)."""
        return build_network(self.net_cfg).state_dict()

    def network(self, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
        """Return the study's network holding `weights`."""
        net = build_network(self.net_cfg)
        net.load_state_dict(weights)
        return net

    def train_round(self, weights: dict[str, torch.Tensor], order: RoundOrder) -> tuple[dict[str, torch.Tensor], dict]:
        """Train the global `weights` for the round's local epochs on this site's training split; return new weights and statistics."""
        seed = round_seed(int(self.cfg.seed), self.site, order.round_number)
        train_cfg = self.cfg.train
        seed_everything(seed, train_cfg.deterministic, self.device, train_cfg.cudnn_benchmark)
        net = self.network(weights)
        class_weights = balanced_weights(self.train.labels, self.task) if train_cfg.class_weighting == "balanced" else None
        settings = replace(TrainSettings.from_config(train_cfg, class_weights), max_epochs=order.total_epochs)
        loader = make_loader(self.train.images, self.train.labels, train_cfg.batch_size, train=True, augment=train_cfg.augment,
                             seed=seed, num_workers=train_cfg.num_workers, pin_memory=self.device.type == "cuda")
        state = TrainingState(net, loader, self.task, settings, self.device)
        first_epoch = (order.round_number - 1) * order.local_epochs
        state.skip_schedule(first_epoch)
        if order.proximal_mu > 0:
            state.penalty = _proximal_term(net, weights, order.proximal_mu, self.device)
        started, seen, loss_sum = time.perf_counter(), 0, 0.0
        learning_rate = state.optimizer.param_groups[0]["lr"]
        for epoch in range(first_epoch + 1, first_epoch + order.local_epochs + 1):
            count, summed, _, _ = state.train_epoch(epoch)
            seen, loss_sum = seen + count, loss_sum + summed
        seconds = time.perf_counter() - started
        log.info("site %s round %d: %d local epochs on %d images, train loss %.4f, %.1f s", self.site, order.round_number,
                 order.local_epochs, len(self.train.labels), loss_sum / max(seen, 1), seconds)
        new_weights = {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}
        return new_weights, {"train-loss": loss_sum / max(seen, 1), "train-images": len(self.train.labels),
                             "learning-rate": float(learning_rate), "seconds": seconds}

    def validate(self, weights: dict[str, torch.Tensor]) -> dict:
        """Return the global weights' loss and AUC on this site's validation split (aggregates only)."""
        net = self.network(weights).to(self.device)
        probabilities = predict_probabilities(net, self.val.images, self.device, self.task)
        auc = mean_auc(probabilities, self.val.labels, self.task)
        return {"val-loss": mean_log_loss(probabilities, self.val.labels, self.task),
                "val-auc": float(auc) if np.isfinite(auc) else float("nan"), "val-images": len(self.val.labels)}


def _proximal_term(net: torch.nn.Module, global_weights: dict[str, torch.Tensor], mu: float, device):
    """Return FedProx's term mu/2 ||w - w_global||^2 over the trainable parameters, as a function of the current weights."""
    anchors = [(param, global_weights[name].to(device=device, dtype=param.dtype))
               for name, param in net.named_parameters() if param.requires_grad]

    def term() -> torch.Tensor:
        return 0.5 * mu * sum(((param - anchor) ** 2).sum() for param, anchor in anchors)

    return term
