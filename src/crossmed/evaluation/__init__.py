"""Validation of a trained model: metrics at an operating point chosen on validation, plots, reports."""
