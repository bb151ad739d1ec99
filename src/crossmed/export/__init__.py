"""Exported model artifacts: TorchScript with a JSON description, parity-checked against the eager network."""
