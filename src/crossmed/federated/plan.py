"""The federation's plan from the study config: which sites train, how many rounds of how many local epochs, which aggregation."""

from dataclasses import dataclass

from crossmed.errors import ConfigError

AGGREGATIONS = ("fedavg", "fedprox")
HIDE_CHOICES = ("auto", "true", "false")


@dataclass(frozen=True)
class FederationPlan:
    """Sites (in the study's order: aggregation sums in this order), rounds, local epochs and the aggregation."""

    sites: tuple[str, ...]
    rounds: int
    local_epochs: int
    aggregation: str
    proximal_mu: float
    round_timeout_s: int
    hide_site_data: str = "auto"
    tls: bool = True

    @property
    def total_epochs(self) -> int:
        """Return rounds x local epochs: the epochs every site's schedule spans."""
        return self.rounds * self.local_epochs

    @classmethod
    def from_config(cls, cfg) -> "FederationPlan":
        """Return the plan of cfg.train.federated and cfg.study; raise ConfigError naming the key that is wrong."""
        fed = cfg.train.federated
        if fed.rounds < 1:
            raise ConfigError("train.federated.rounds", f"{fed.rounds}: at least one round")
        if fed.local_epochs < 1:
            raise ConfigError("train.federated.local_epochs", f"{fed.local_epochs}: at least one epoch per round")
        if fed.aggregation not in AGGREGATIONS:
            raise ConfigError("train.federated.aggregation", f"unknown aggregation '{fed.aggregation}' (known: {', '.join(AGGREGATIONS)})")
        if fed.aggregation == "fedprox" and fed.proximal_mu <= 0:
            raise ConfigError("train.federated.proximal_mu", f"{fed.proximal_mu}: FedProx needs a positive mu")
        hide = str(fed.get("hide_site_data", "auto")).lower()
        if hide not in HIDE_CHOICES:
            raise ConfigError("train.federated.hide_site_data", f"'{hide}' (known: {', '.join(HIDE_CHOICES)})")
        return cls(training_sites(cfg), int(fed.rounds), int(fed.local_epochs), str(fed.aggregation),
                   float(fed.proximal_mu), int(fed.round_timeout_s), hide, bool(fed.get("tls", True)))


def training_sites(cfg) -> tuple[str, ...]:
    """Return the sites that train, in the study's order: train.federated.sites, else study.train_sites, else the internal sites."""
    study_sites = [str(s) for s in cfg.study.sites]
    external = {str(s) for s in cfg.study.get("external_sites", [])}
    internal = [s for s in study_sites if s not in external]
    chosen = [str(s) for s in cfg.train.federated.sites] or [str(s) for s in cfg.study.get("train_sites", [])] or internal
    unknown = [s for s in chosen if s not in internal]
    if unknown:
        raise ConfigError("train.federated.sites", f"{', '.join(unknown)} not among the study's internal sites ({', '.join(internal)})")
    if not chosen:
        raise ConfigError("study.sites", "no internal site to train on")
    return tuple(s for s in study_sites if s in chosen)
