"""Training images/second on a CUDA GPU for ResNet-18 and DenseNet121 at 224 px, with and without AMP; print JSON.

Runs crossmed's own training loop (training.loop.fit with the stage's loader: pinned memory, loader worker
processes, channels_last, cuDNN autotuning, deterministic mode off) on random in-memory images, and samples
GPU utilisation with nvidia-smi while it trains. Throughput is the median over epochs after the first.
Each network also runs with its input already on the GPU ("input": "resident": one batch, no loader), the ceiling
the training step itself allows, so a gap between the two is the input pipeline's; and (--ddp) inside a one-process
NCCL group, wrapped in DistributedDataParallel as train.strategy=ddp does (one GPU: the cost of the DDP path itself);
and (--compile) with AMP under torch.compile as train.compile=true does (the first epoch holds the compilation).
Without CUDA it prints {"skipped": ...} and exits 0.
Run: `.venv/bin/python benchmarks/gpu_throughput.py [--images 4096] [--batch 128] [--epochs 3] [--ddp] [--compile] [--only-extra]`.
"""

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parent.parent


class UtilisationSampler(threading.Thread):
    """Sample nvidia-smi's GPU utilisation (%) and memory use (MiB) every `interval` seconds until stopped."""

    def __init__(self, index: int, interval: float = 0.5):
        super().__init__(daemon=True)
        self.index, self.interval, self.samples, self.done = index, interval, [], threading.Event()

    def run(self) -> None:
        query = ["nvidia-smi", f"--id={self.index}", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
        while not self.done.wait(self.interval):
            try:
                used, memory = subprocess.run(query, capture_output=True, text=True, timeout=5).stdout.strip().split(",")
                self.samples.append((float(used), float(memory)))
            except (OSError, ValueError, subprocess.SubprocessError):
                return


class ResidentBatches:
    """`steps` times the same batch, already on the device: a loader that costs nothing."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch: int, device: torch.device):
        self.batch = {"image": torch.as_tensor(images[:batch], device=device), "label": torch.as_tensor(labels[:batch], device=device)}
        self.steps, self.batch_sampler = -(-len(labels) // batch), None

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        return iter([self.batch] * self.steps)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def measure(model: str, amp: bool, images: np.ndarray, labels: np.ndarray, batch: int, epochs: int, workers: int,
            device: torch.device, resident: bool = False, ddp: bool = False, compiled: bool = False) -> dict:
    """Train `model` (a conf/model name) for `epochs` and return its throughput, utilisation and peak GPU memory."""
    import torch.distributed as dist
    from crossmed.data.task import Task
    from crossmed.devices import seed_everything
    from crossmed.model.networks import build_network, fit_to_task
    from crossmed.training.loaders import make_loader
    from crossmed.training.loop import TrainSettings, fit

    cuda = device.type == "cuda"
    seed_everything(0, deterministic=False, device=device, cudnn_benchmark=True)
    task = Task("binary", ("negative", "positive"), images.shape[1], 2)
    net_cfg = yaml.safe_load((REPO / "conf" / "model" / f"{model}.yaml").read_text())["net"]
    net = build_network(fit_to_task(net_cfg, task.channels, task.outputs, 2, images.shape[2:]))
    if resident:
        loader = ResidentBatches(images, labels, batch, device)
    else:
        loader = make_loader(images, labels, batch, train=True, augment=[], seed=0, num_workers=workers, pin_memory=cuda)
    if ddp:  # one process: DistributedDataParallel's hooks and bucketed all-reduce over NCCL, nothing to average
        dist.init_process_group("nccl" if cuda else "gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    settings = TrainSettings(max_epochs=epochs, learning_rate=1e-3, weight_decay=1e-4, amp=amp, channels_last=True,
                             log_every_steps=10**9, compile=compiled, compile_backend="inductor")
    results = []
    sampler = UtilisationSampler(torch.cuda.current_device() if cuda else 0)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        sampler.start()
    try:
        fit(net, loader, images[:256], labels[:256], task, settings, device, lambda result, *_: results.append(result))
    finally:
        if ddp:
            dist.destroy_process_group()
    if cuda:
        sampler.done.set()
        sampler.join()
    rates = [r.images_per_second for r in results]
    busy = [u for u, _ in sampler.samples]
    return {"model": model, "amp": amp, "input": "resident" if resident else f"loader, {workers} workers",
            "ddp": ddp, "compiled": compiled, "images_per_second": round(statistics.median(rates[1:] or rates), 1),
            "per_epoch": [round(r, 1) for r in rates], "gpu_utilisation_percent_mean": round(statistics.mean(busy), 1) if busy else None,
            "peak_allocated_mib": round(torch.cuda.max_memory_allocated(device) / 2**20) if cuda else None}


def main() -> None:
    """Run each network with and without AMP and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--models", nargs="+", default=["resnet18", "densenet121"])
    parser.add_argument("--device", default="cuda", help="cpu only checks the script itself (tiny sizes)")
    parser.add_argument("--ddp", action="store_true", help="also run each network with AMP inside a one-process DDP group")
    parser.add_argument("--compile", action="store_true", help="also run each network with AMP under torch.compile (inductor)")
    parser.add_argument("--only-extra", action="store_true", help="run only the --ddp / --compile runs")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"benchmark": "gpu_throughput", "skipped": "no CUDA device on this machine"}))
        return
    rng = np.random.default_rng(0)
    images = rng.standard_normal((args.images, 3, args.size, args.size), dtype=np.float32)
    labels = rng.integers(0, 2, (args.images, 1)).astype(np.int64)
    started = time.perf_counter()
    plan = [] if args.only_extra else [(model, amp, resident, False, False) for model in args.models for amp in (False, True)
                                       for resident in (False, True)]
    plan += [(model, True, False, True, False) for model in args.models if args.ddp]
    plan += [(model, True, resident, False, True) for model in args.models for resident in (False, True) if args.compile]
    runs = []
    for model, amp, resident, ddp, compiled in plan:
        runs.append(measure(model, amp, images, labels, args.batch, args.epochs, args.workers, device, resident, ddp, compiled))
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)  # progress, and what a run cut short had measured
    cuda = device.type == "cuda"
    print(json.dumps({"benchmark": "gpu_throughput", "gpu": torch.cuda.get_device_name() if cuda else None,
                      "torch": torch.__version__, "bf16": torch.cuda.is_bf16_supported() if cuda else None, "image_size": args.size, "batch_size": args.batch,
                      "images": args.images, "loader_workers": args.workers, "runs": runs,
                      "seconds": round(time.perf_counter() - started, 1)}, indent=2))


if __name__ == "__main__":
    main()
