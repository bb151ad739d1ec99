"""Stage `export`: models/export/ (TorchScript, ONNX, MLflow model, MONAI bundle, model card)."""

from crossmed.stage import run_stage


def export(cfg) -> None:
    """Write models/export/ and register the MLflow model."""
    from crossmed.export.study import export_study  # here, not at the top: see crossmed.stage

    export_study(cfg, f"{cfg.paths.models}/checkpoint.pt", f"{cfg.paths.experiments}/train/mlflow_run.json", cfg.paths.models)


if __name__ == "__main__":
    run_stage(export, __file__, "export", computes="cpu")
