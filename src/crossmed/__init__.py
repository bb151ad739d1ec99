"""crossmed: multi-site diagnostic imaging studies with DVC, Hydra, MONAI and MLflow."""

__version__ = "0.1.0"
