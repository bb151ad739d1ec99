"""Stage `export`: models/export/ (TorchScript, ONNX, MLflow model, MONAI bundle, model card)."""

from crossmed.stage import run_stage


def export(cfg) -> None:
    """Write paths.export and register the MLflow model."""
    from crossmed.stages import export as stage  # here, not at the top: see crossmed.stage

    stage.run(cfg)


if __name__ == "__main__":
    run_stage(export, __file__, "export", computes="cpu")
