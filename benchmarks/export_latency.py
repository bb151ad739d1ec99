"""Latency at batch 1 and throughput at batch 64 of eager PyTorch, TorchScript and ONNX Runtime, in one run; print JSON.

Models: the default study's export (models/export/model and models/checkpoint.pt, resnet_small at 64 px) when
present, and a MONAI ResNet-18 at 224 px exported the same way to a temporary folder (a typical demonstration
network). Each runtime runs on this CPU with the same thread count; latency is the median of --runs single-image
calls after warm-up, throughput the median images/s of batches of 64. Goal: ONNX Runtime at least 1.5x eager at
batch 1. Run: `.venv/bin/python benchmarks/export_latency.py [--runs 200] [--threads 2]`.
"""

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from timing import median_seconds  # benchmarks/timing.py (scripts run from benchmarks/)

REPO = Path(__file__).resolve().parent.parent


def measure(name: str, net: torch.nn.Module, ts_path: Path, onnx_path: Path, shape: tuple, runs: int, threads: int) -> dict:
    """Return batch-1 latency (ms) and batch-64 images/s of the three runtimes for one model."""
    import onnxruntime

    from crossmed.export.torchscript import WithProbabilities

    eager = WithProbabilities(net).eval()
    scripted = torch.jit.load(str(ts_path)).eval()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    one, batch = rng.normal(size=(1, *shape)).astype(np.float32), rng.normal(size=(64, *shape)).astype(np.float32)
    runners = {"eager": lambda x: eager(torch.as_tensor(x)), "torchscript": lambda x: scripted(torch.as_tensor(x)),
               "onnxruntime": lambda x: session.run(None, {"image": x})}
    out = {"model": name, "input_shape": list(shape)}
    with torch.inference_mode():
        for runtime, run in runners.items():
            latency = median_seconds(lambda: run(one), runs, warmup=10)
            per_batch = median_seconds(lambda: run(batch), max(5, runs // 20), warmup=3)
            out[runtime] = {"latency_ms_batch1": round(latency * 1000, 3), "images_per_s_batch64": round(64 / per_batch, 1)}
    out["onnxruntime_speedup_batch1_vs_eager"] = round(out["eager"]["latency_ms_batch1"] / out["onnxruntime"]["latency_ms_batch1"], 2)
    out["torchscript_speedup_batch1_vs_eager"] = round(out["eager"]["latency_ms_batch1"] / out["torchscript"]["latency_ms_batch1"], 2)
    return out


def main() -> None:
    """Measure the study's export (when present) and a ResNet-18 at 224 px; print one JSON object."""
    from monai.networks.nets import resnet18

    from crossmed.model.checkpoint import load_trained_network
    from crossmed.export.onnx_export import export_onnx
    from crossmed.export.torchscript import export_torchscript

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    study = REPO / "models" / "export" / "model"
    if (study / "model.onnx").is_file() and (REPO / "models" / "checkpoint.pt").is_file():
        net, checkpoint = load_trained_network(REPO / "models" / "checkpoint.pt", torch.device("cpu"))
        results.append(measure(f"default study ({checkpoint['model']['name']})", net, study / "model.ts", study / "model.onnx",
                               tuple(checkpoint["input_shape"]), args.runs, args.threads))
    with tempfile.TemporaryDirectory(prefix="crossmed-latency-") as tmp:
        net = resnet18(spatial_dims=2, n_input_channels=1, num_classes=2).eval()
        example = np.random.default_rng(1).normal(size=(2, 1, 224, 224)).astype(np.float32)
        export_torchscript(net, example, Path(tmp) / "model.ts")
        export_onnx(net, example, Path(tmp) / "model.onnx", opset=20)
        results.append(measure("MONAI ResNet-18, 224 px", net, Path(tmp) / "model.ts", Path(tmp) / "model.onnx",
                               (1, 224, 224), max(20, args.runs // 5), args.threads))
    print(json.dumps({"benchmark": "export_latency", "threads": args.threads, "torch": torch.__version__,
                      "goal": "onnxruntime >= 1.5x eager at batch 1", "models": results}, indent=2))


if __name__ == "__main__":
    main()
