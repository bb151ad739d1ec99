"""Training images/second of the train stage beside a bare PyTorch loop on the same network and data; print JSON.

Both run in their own process with the same thread count, network (conf/model), batch size, optimiser
(AdamW), memory format and determinism switch; the bare loop holds the training images in memory as one
tensor and does nothing but forward, backward and step. The stage runs as `dvc repro` would (lazy reads
from the memory-mapped processed data, MONAI augmentations, validation, per-epoch resume state), once with
the configured augmentations and once without. Throughput is the median over epochs after the first;
peak memory is each process's maximum resident set size. The three variants run --repeats times,
interleaved, and the medians are compared: a shared machine's speed drifts by tens of percent over minutes.
Uses the processed data of the current checkout (run `dvc repro` first) or --processed.
Run: `.venv/bin/python benchmarks/train_throughput.py [--epochs 6] [-o model=resnet18 ...]`.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parent.parent


def _config(root: Path, processed: Path, epochs: int, overrides: list[str]) -> Path:
    from crossmed.params_file import compose_params
    from crossmed.study_paths import folder_overrides

    # native arithmetic, as the bare loop computes (benchmarks/portable_cpu.py compares the two modes)
    cfg = OmegaConf.create(compose_params(REPO / "conf", overrides=[f"train.max_epochs={epochs}", "reproducibility.cpu=native",
                                                                    *folder_overrides(root, ("models", "experiments")), *overrides]))
    cfg.paths.processed = str(processed)
    cfg.mlflow.tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    OmegaConf.save(cfg, root / "config.yaml")
    return root / "config.yaml"


def _run(command: list[str], log: Path) -> tuple[float, float]:
    """Run `command` with its output in `log`; return (seconds, peak resident memory in MiB)."""
    started = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(command)} failed:\n{log.read_text()[-3000:]}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024  # Linux reports KiB


def bare_loop(config: str) -> None:
    """Train the configured network with a plain loop over in-memory tensors; print per-epoch images/second as JSON."""
    import numpy as np
    import torch

    from crossmed.data.processed import ProcessedData
    from crossmed.devices import seed_everything
    from crossmed.model.networks import build_network, fit_to_task

    cfg = OmegaConf.load(config)
    data = ProcessedData.load(cfg.paths.processed)
    train = data.split("train")
    images = torch.as_tensor(np.stack([train.images[i] for i in range(len(train.labels))]))
    labels = torch.as_tensor(train.labels[:, 0], dtype=torch.long)
    device = torch.device("cpu")
    seed_everything(int(cfg.seed), bool(cfg.train.deterministic), device, False)
    task = data.task
    net = build_network(fit_to_task(cfg.model.net, task.channels, task.outputs, task.spatial_dims, tuple(images.shape[2:])))
    memory_format = torch.channels_last if cfg.train.channels_last and images.ndim == 4 else torch.contiguous_format
    net = net.to(memory_format=memory_format)
    images = images.contiguous(memory_format=memory_format)
    optimizer = torch.optim.AdamW(net.parameters(), lr=float(cfg.train.learning_rate), weight_decay=float(cfg.train.weight_decay))
    loss_fn = torch.nn.CrossEntropyLoss()
    batch = int(cfg.train.batch_size)
    rates = []
    for _ in range(int(cfg.train.max_epochs)):
        net.train()
        started = time.perf_counter()
        for index in torch.randperm(len(labels)).split(batch):
            optimizer.zero_grad(set_to_none=True)
            batch_images = images[index].contiguous(memory_format=memory_format)  # indexing returns NCHW
            loss_fn(net(batch_images), labels[index]).backward()
            optimizer.step()
        rates.append(len(labels) / (time.perf_counter() - started))
    print(json.dumps({"images_per_second": rates, "threads": torch.get_num_threads(), "images": len(labels)}))


def main() -> None:
    """Run the stage (with and without augmentation) and the bare loop; print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--processed", default=str(REPO / "data" / "processed"))
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each variant")
    parser.add_argument("-o", "--override", action="append", default=[], help="a Hydra override, e.g. model=resnet18")
    parser.add_argument("--bare", help=argparse.SUPPRESS)  # internal: run the bare loop on this config
    args = parser.parse_args()
    if args.bare:
        return bare_loop(args.bare)
    processed = Path(args.processed)
    if not (processed / "manifest.csv").is_file():
        sys.exit(f"{processed} has no processed data: run `dvc repro` first or give --processed")
    import pandas as pd

    runs: dict[str, list[dict]] = {"stage": [], "stage_no_augment": [], "bare_loop": []}
    threads = None
    with tempfile.TemporaryDirectory(prefix="crossmed-throughput-") as tmp:
        for repeat in range(args.repeats):
            for name, extra in (("stage", []), ("stage_no_augment", ["train.augment=[]"]), ("bare_loop", None)):
                root = Path(tmp) / f"{name}-{repeat}"
                root.mkdir()
                config = _config(root, processed, args.epochs, [*args.override, *(extra or [])])
                if extra is None:
                    seconds, peak = _run([sys.executable, __file__, "--bare", str(config)], root / "log.txt")
                    report = json.loads((root / "log.txt").read_text().strip().splitlines()[-1])
                    rates, threads = report["images_per_second"], report["threads"]
                else:
                    seconds, peak = _run([sys.executable, "-m", "crossmed.stages", "train", str(config)], root / "log.txt")
                    rates = pd.read_csv(root / "experiments" / "train" / "history.csv")["images_per_second"].tolist()
                runs[name].append({"images_per_second": statistics.median(rates[1:]), "peak_memory_mib": peak,
                                   "process_seconds": seconds})
    results = {name: {"images_per_second": round(statistics.median(r["images_per_second"] for r in rs), 1),
                      "runs_images_per_second": [round(r["images_per_second"], 1) for r in rs],
                      "peak_memory_mib": round(max(r["peak_memory_mib"] for r in rs)),
                      "process_seconds": round(statistics.median(r["process_seconds"] for r in rs), 1)}
               for name, rs in runs.items()}
    bare = results["bare_loop"]["images_per_second"]
    print(json.dumps({"benchmark": "train_throughput", "epochs": args.epochs, "repeats": args.repeats, "overrides": args.override,
                      "processed": str(processed), "torch_threads": threads,
                      "ratio_stage_to_bare": round(results["stage"]["images_per_second"] / bare, 3),
                      "ratio_stage_no_augment_to_bare": round(results["stage_no_augment"]["images_per_second"] / bare, 3),
                      "goal_ratio": 0.9, **results}, indent=2))


if __name__ == "__main__":
    main()
