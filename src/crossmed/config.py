"""Typed schemas of conf/ groups, registered with Hydra's ConfigStore so a composed config is checked as it is made.

conf/train, conf/evaluate and conf/export list `schema` first in their defaults: composing (`dvc exp run -S train.max_epochs=abc`,
`python pipelines/train.py ...`, `crossmed params`) fails at once, naming the key, when a value has the wrong type
or a key is misspelt. Registration happens in hydra_plugins/crossmed_config, which Hydra imports when it starts
(DVC's composition too). Values that are one of a few words (optimizer, schedule, ...) are checked where they are used.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class DDPConfig:
    """train.ddp: several training processes on one machine."""

    nproc_per_node: Any = "auto"  # a number of processes, or auto (checked by crossmed.training.distributed)
    backend: str = "auto"
    sync_batchnorm: bool = True


@dataclass
class TrainConfig:
    """train: the training loop's settings (conf/train/common.yaml says what each means)."""

    max_epochs: int = 30
    batch_size: int = 64
    device: str = "auto"
    optimizer: str = "adamw"
    learning_rate: float = 0.001
    weight_decay: float = 0.0001
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup_epochs: int = 0
    grad_clip_norm: float | None = None
    class_weighting: str = "none"
    sampler: str = "shuffle"
    augment: list[Any] = field(default_factory=list)
    amp: bool = True
    channels_last: bool = True
    compile: bool = False
    compile_backend: str = "inductor"
    deterministic: bool = True
    cudnn_benchmark: bool = True
    num_workers: int = 0
    log_every_steps: int = 10
    early_stopping_patience: int = 0
    resume: bool = True
    strategy: str = "single"
    ddp: DDPConfig = field(default_factory=DDPConfig)


@dataclass
class DifferentialPrivacyConfig:
    """train.federated.differential_privacy: site-level central DP (Flower's server-side fixed clipping)."""

    enabled: bool = False
    noise_multiplier: float = 1.0
    clipping_norm: float = 1.0
    delta: float = 1.0e-3
    max_epsilon: float | None = None


@dataclass
class SecureAggregationConfig:
    """train.federated.secure_aggregation: Flower's SecAgg+ (the coordinator sees only the sum of the sites' updates)."""

    enabled: bool = False
    clipping_range: float = 8.0
    quantization_range: int = 4194304


@dataclass
class FederatedConfig:
    """train.federated: rounds, aggregation, privacy and the sites' processes (conf/train/federated.yaml)."""

    rounds: int = 10
    local_epochs: int = 3
    aggregation: str = "fedavg"
    proximal_mu: float = 0.01
    sites: list[str] = field(default_factory=list)
    round_timeout_s: int = 3600
    hide_site_data: str = "auto"
    tls: bool = True
    superlink: str | None = None
    superlink_ca: str | None = None
    differential_privacy: DifferentialPrivacyConfig = field(default_factory=DifferentialPrivacyConfig)
    secure_aggregation: SecureAggregationConfig = field(default_factory=SecureAggregationConfig)


@dataclass
class FederatedTrainConfig(TrainConfig):
    """train=federated: the shared training settings plus the federated block (conf/train/federated.yaml)."""

    federated: FederatedConfig = field(default_factory=FederatedConfig)


@dataclass
class BootstrapConfig:
    """evaluate.bootstrap: intervals by resampling whole patients."""

    resamples: int = 1000
    seed: int = 0
    confidence: float = 0.95
    min_per_class: int = 10


@dataclass
class GradCAMConfig:
    """evaluate.gradcam: saliency overlays and the layer they are drawn from."""

    cases: int = 4
    target_layer: str = "auto"


@dataclass
class SiteValidationConfig:
    """evaluate.site_validation: which sites the validate_sites stage validates the exported model on, and how."""

    sites: list[str] = field(default_factory=list)
    runtime: str = "torchscript"
    min_patients: int = 5


@dataclass
class EvaluateConfig:
    """evaluate: operating point, intervals, calibration, comparison and saliency (conf/evaluate/default.yaml)."""

    operating_point: str = "youden"
    target: float = 0.9
    fixed_threshold: float = 0.5
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    temperature_scaling: bool = True
    compare_with: Any = None  # a run ID or evaluation folder, or a mapping {label: run ID or folder}
    gradcam: GradCAMConfig = field(default_factory=GradCAMConfig)
    site_validation: SiteValidationConfig = field(default_factory=SiteValidationConfig)


@dataclass
class ModelCardConfig:
    """export.card: the model card's statements about use."""

    intended_use: str = ""
    intended_users: list[str] = field(default_factory=list)
    not_intended: list[str] = field(default_factory=list)


@dataclass
class ExportConfig:
    """export: formats, parity checks, registration and the model card (conf/export/default.yaml)."""

    formats: list[str] = field(default_factory=lambda: ["torchscript", "onnx", "mlflow", "bundle"])
    parity_images: int = 64
    parity_atol: float = 1.0e-5
    onnx_parity_atol: float = 1.0e-4
    onnx_opset: int = 20
    register: bool = True
    registered_name: str = ""
    card: ModelCardConfig = field(default_factory=ModelCardConfig)


SCHEMAS = {("train", "schema"): TrainConfig, ("train", "federated_schema"): FederatedTrainConfig,
           ("evaluate", "schema"): EvaluateConfig, ("export", "schema"): ExportConfig}  # (group, name) in the ConfigStore


def register_schemas() -> None:
    """Store every schema in Hydra's ConfigStore under its group and name (idempotent)."""
    store = ConfigStore.instance()
    for (group, name), schema in SCHEMAS.items():
        store.store(group=group, name=name, node=schema)
