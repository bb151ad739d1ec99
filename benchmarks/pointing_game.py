"""The pointing game of the current checkout's trained model on its processed data, per Grad-CAM layer; prints JSON.

For every correctly detected positive whose finding the data record (the built-in cohort), a hit is a Grad-CAM
maximum within 1.5 x the finding's radius of its centre. The layer the evaluation uses ('auto') is compared with
the network's other convolutional blocks. Needs `dvc repro` (models/checkpoint.pt and data/processed) first.
Run: `.venv/bin/python benchmarks/pointing_game.py [--checkpoint models/checkpoint.pt] [--processed data/processed]`.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    """Play the pointing game on the internal and external test sets at every convolutional block; print JSON."""
    from crossmed.data.processed import ProcessedData
    from crossmed.evaluation.pointing import finding_positions, pointing_game
    from crossmed.model.saliency import grad_cam, saliency_layer
    from crossmed.model.checkpoint import load_checkpoint
    from crossmed.model.probabilities import predict_probabilities
    from crossmed.model.networks import build_network

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(REPO / "models" / "checkpoint.pt"))
    parser.add_argument("--processed", default=str(REPO / "data" / "processed"))
    parser.add_argument("--threshold", type=float, help="decision threshold (default: the evaluation's operating point)")
    args = parser.parse_args()
    checkpoint = load_checkpoint(args.checkpoint)
    net = build_network(checkpoint["model"]["net"])
    net.load_state_dict(checkpoint["state_dict"])
    net.eval()
    data = ProcessedData.load(args.processed)
    operating = REPO / "experiments" / "evaluation" / "operating_point.json"
    threshold = args.threshold or (json.loads(operating.read_text())["threshold"] if operating.is_file() else 0.5)
    shape = tuple(data.images.shape[1:])
    blocks = [name for name, child in net.named_children() if any(isinstance(m, torch.nn.Conv2d) for m in child.modules())]
    out = {"checkpoint": args.checkpoint, "threshold": threshold, "auto_layer": saliency_layer(net, shape), "sets": {}}
    for name, split in (("internal_test", "test"), ("external_test", "external_test")):
        part = data.split(split)
        findings = finding_positions(part.rows)
        if findings is None or not len(part.labels):
            sys.exit(f"{args.processed} records no finding positions (only the built-in cohort does)")
        import pandas as pd

        probabilities = predict_probabilities(net, part.images, torch.device("cpu"), data.task)
        table = pd.DataFrame({"set": name, "actual": part.labels[:, 0],
                              "predicted": (probabilities[:, 1] >= threshold).astype(int)})
        out["sets"][name] = {layer: pointing_game(grad_cam(net, layer, shape)[0], part.images, table, findings, 1,
                                                  torch.device("cpu")) for layer in blocks[-3:]}
    print(json.dumps(out, indent=2, default=lambda v: v.item() if isinstance(v, np.generic) else str(v)))


if __name__ == "__main__":
    main()
