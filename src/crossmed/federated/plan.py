"""The federation's plan from the study config: which sites train, how many rounds of how many local epochs, which aggregation."""

from dataclasses import dataclass

from crossmed.errors import ConfigError

AGGREGATIONS = ("fedavg", "fedprox")
HIDE_CHOICES = ("auto", "true", "false")


@dataclass(frozen=True)
class PrivacyPlan:
    """Site-level central differential privacy: noise multiplier z, clipping norm C, the delta epsilon is reported at,
    and an optional ceiling on epsilon."""

    noise_multiplier: float
    clipping_norm: float
    delta: float
    max_epsilon: float | None = None

    @classmethod
    def from_config(cls, dp) -> "PrivacyPlan | None":
        """Return the plan of train.federated.differential_privacy (None when off); raise ConfigError naming a wrong key."""
        if dp is None or not dp.enabled:
            return None
        where = "train.federated.differential_privacy"
        if not dp.noise_multiplier > 0:
            raise ConfigError(f"{where}.noise_multiplier", f"{dp.noise_multiplier}: must be positive for any privacy")
        if not dp.clipping_norm > 0:
            raise ConfigError(f"{where}.clipping_norm", f"{dp.clipping_norm}: must be positive")
        if not 0 < dp.delta < 1:
            raise ConfigError(f"{where}.delta", f"{dp.delta}: must lie between 0 and 1")
        if dp.max_epsilon is not None and not dp.max_epsilon > 0:
            raise ConfigError(f"{where}.max_epsilon", f"{dp.max_epsilon}: must be positive (or null)")
        return cls(float(dp.noise_multiplier), float(dp.clipping_norm), float(dp.delta),
                   None if dp.max_epsilon is None else float(dp.max_epsilon))

    def as_dict(self) -> dict:
        """Return the settings as JSON-ready data."""
        return {"noise_multiplier": self.noise_multiplier, "clipping_norm": self.clipping_norm, "delta": self.delta,
                "max_epsilon": self.max_epsilon}


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
    privacy: PrivacyPlan | None = None
    secure: dict | None = None  # SecAgg+ settings (clipping_range, quantization_range) when on
    superlink: str | None = None  # HOST:PORT of a coordinator that already runs (a real deployment); None = a trial here
    superlink_ca: str | None = None  # the CA certificate that signed that coordinator's

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
        privacy = PrivacyPlan.from_config(fed.get("differential_privacy"))
        secure = fed.get("secure_aggregation")
        if secure is not None and secure.enabled:
            if privacy is not None:
                raise ConfigError("train.federated.secure_aggregation", "not yet together with differential_privacy "
                                  "(that needs the sites to clip and the noise added to the masked sum)")
            if not secure.clipping_range > 0 or not secure.quantization_range > 1:
                raise ConfigError("train.federated.secure_aggregation", "clipping_range and quantization_range must be positive")
            secure = {"clipping_range": float(secure.clipping_range), "quantization_range": int(secure.quantization_range)}
        else:
            secure = None
        superlink, superlink_ca = fed.get("superlink"), fed.get("superlink_ca")
        if superlink is not None:
            host, _, port = str(superlink).rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError("train.federated.superlink", f"'{superlink}': HOST:PORT of the coordinator's SuperLink")
            if not superlink_ca:
                raise ConfigError("train.federated.superlink_ca", "the CA certificate (PEM) of the coordinator at "
                                  f"{superlink} is needed: the sites' weights travel over TLS only")
        return cls(training_sites(cfg), int(fed.rounds), int(fed.local_epochs), str(fed.aggregation),
                   float(fed.proximal_mu), int(fed.round_timeout_s), hide, bool(fed.get("tls", True)), privacy, secure,
                   str(superlink) if superlink is not None else None, str(superlink_ca) if superlink_ca else None)


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
