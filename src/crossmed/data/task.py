"""What a dataset asks a model to predict: task type, class names, image channels and dimensions."""

from dataclasses import asdict, dataclass

from crossmed.errors import ConfigError

TASK_TYPES = ("binary", "multiclass", "multilabel", "ordinal")


@dataclass(frozen=True)
class Task:
    """The prediction task of a processed dataset; travels with the data card, checkpoint and exported model."""

    type: str
    classes: tuple[str, ...]
    channels: int
    spatial_dims: int

    def __post_init__(self):
        if self.type not in TASK_TYPES:
            raise ConfigError("data.task", f"unknown task type '{self.type}' (known: {', '.join(TASK_TYPES)})")
        if len(self.classes) < 2 and self.type != "multilabel":
            raise ConfigError("data.classes", f"a {self.type} task needs at least two classes, got {list(self.classes)}")
        if self.type == "binary" and len(self.classes) != 2:
            raise ConfigError("data.classes", f"a binary task has exactly two classes, got {list(self.classes)}")
        if self.spatial_dims not in (2, 3):
            raise ConfigError("data.spatial_dims", f"must be 2 or 3, not {self.spatial_dims}")

    @property
    def multilabel(self) -> bool:
        """Return True when each image carries one 0/1 label per class."""
        return self.type == "multilabel"

    @property
    def outputs(self) -> int:
        """Return the number of network outputs (logits)."""
        return len(self.classes)

    @property
    def label_columns(self) -> int:
        """Return how many label values each image has."""
        return len(self.classes) if self.multilabel else 1

    def as_dict(self) -> dict:
        """Return the task as JSON-able values."""
        return {**asdict(self), "classes": list(self.classes)}

    @classmethod
    def from_dict(cls, values: dict) -> "Task":
        """Return the task stored by as_dict()."""
        return cls(values["type"], tuple(values["classes"]), int(values["channels"]), int(values["spatial_dims"]))

    @property
    def label_max(self) -> int:
        """Return the largest valid label value (1 for multi-label, else the last class index)."""
        return 1 if self.multilabel else len(self.classes) - 1
