"""Training a MONAI network on the processed dataset, with checkpoints and per-epoch metrics."""
