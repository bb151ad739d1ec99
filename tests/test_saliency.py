"""Saliency that points at the finding: Grad-CAM's orientation, the layer it reads, the finding's position carried from the
synthetic cohort to the processed grid, and the pointing game."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from monai.visualize import GradCAM

from crossmed.data.image_transforms import point_on_grid, to_common_grid
from crossmed.evaluation.pointing import finding_positions, hits, pointing_game
from crossmed.model.saliency import grad_cam, saliency_layer


class BlobNet(torch.nn.Module):
    """A network whose evidence for class 1 is, by construction, the image's bright spot."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 5, padding=2, bias=False), torch.nn.ReLU())
        self.fc = torch.nn.Linear(1, 2)
        with torch.no_grad():
            self.features[0].weight.fill_(1 / 25)
            self.fc.weight.copy_(torch.tensor([[-1.0], [1.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


def _blob_image(row: int, col: int, size: int = 64, sigma: float = 3.0) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return np.exp(-((yy - row) ** 2 + (xx - col) ** 2) / (2 * sigma**2)).astype(np.float32)[None]


def test_grad_cam_is_highest_at_the_evidence_where_monai_default_is_lowest():
    net, image = BlobNet(), _blob_image(40, 20)
    cam, layer = grad_cam(net, "features", image.shape)
    heat = cam(torch.as_tensor(image[None]), class_idx=1)[0, 0].detach().numpy()
    assert layer == "features" and heat[40, 20] > 0.95 and heat[2, 60] < 0.05, "1 = most relevant, at the bright spot"
    flipped = GradCAM(nn_module=net, target_layers="features")(torch.as_tensor(image[None]), class_idx=1)[0, 0].numpy()
    assert flipped[40, 20] < 0.05, "MONAI's default_normalizer maps the maximum to 0: the bug this guards against"


def test_the_pointing_game_counts_maps_that_peak_on_the_finding():
    net = BlobNet()
    images = [_blob_image(40, 20), _blob_image(10, 50), _blob_image(30, 30)]
    table = pd.DataFrame({"set": "test", "actual": [1, 1, 1], "predicted": [1, 1, 0]})
    findings = np.array([[40.0, 20.0, 4.0], [30.0, 30.0, 4.0], [30.0, 30.0, 4.0]])  # the second map points elsewhere
    cam, _ = grad_cam(net, "features", images[0].shape)
    result = pointing_game(cam, images, table, findings, positive=1, device=torch.device("cpu"))
    assert (result["cases"], result["hits"], result["rate"]) == (2, 1, 0.5), "the missed positive is not a detected case"
    assert result["ci_low"] < 0.5 < result["ci_high"]
    assert hits(np.zeros((1, 8, 8)) + np.eye(8)[None], np.array([[0.0, 3.0, 2.0]])).tolist() == [True]


def test_saliency_layer_keeps_maps_fine_enough_to_localise():
    from omegaconf import OmegaConf

    from crossmed.model.networks import build_network

    net = build_network(OmegaConf.load(Path(__file__).parent.parent / "conf" / "model" / "resnet_small.yaml").net)
    assert saliency_layer(net, (1, 64, 64)) == "layer3", "layer4 is 4 x 4 at 64 px"
    assert saliency_layer(net, (1, 224, 224)) == "layer4"


@pytest.mark.parametrize("shape, spacing, point", [((80, 80), (0.8, 0.8), (20.0, 61.0)),    # resampled, exact fit
                                                   ((120, 100), (0.8, 0.8), (40.0, 70.0)),  # resampled, then cropped
                                                   ((40, 50), (1.0, 1.0), (8.0, 33.0)),     # padded
                                                   ((90, 45), None, (70.0, 10.0))])         # no spacing: longest edge
def test_a_point_lands_where_to_common_grid_puts_its_pixel(shape, spacing, point):
    image = _blob_image(*point, size=max(shape), sigma=1.5)[:, : shape[0], : shape[1]]
    grid = to_common_grid(image, spacing, 1.0 if spacing else None, 64)[0]
    (row, col), radius = point_on_grid(point, 3.0, shape, spacing, 1.0 if spacing else None, 64)
    peak = np.unravel_index(grid.argmax(), grid.shape)
    assert abs(peak[0] - row) <= 1 and abs(peak[1] - col) <= 1, (peak, (row, col))
    assert radius == pytest.approx(3.0 * (0.8 if spacing == (0.8, 0.8) else 1.0 if spacing else 64 / 90), rel=0.05)


def test_the_cohort_records_each_finding_through_deidentification_onto_the_grid(tiny_study):
    raw = pd.concat([pd.read_csv(p, dtype=str, keep_default_na=False) for p in Path(tiny_study.paths.raw).glob("*/labels.csv")])
    deid = pd.concat([pd.read_csv(p, dtype=str, keep_default_na=False)
                      for p in Path(tiny_study.paths.deidentified).glob("*/labels.csv")])
    columns = ["finding", "finding_row", "finding_col", "finding_radius"]
    assert sorted(map(tuple, raw[columns].to_numpy())) == sorted(map(tuple, deid[columns].to_numpy())), "kept as written"
    manifest = pd.read_csv(Path(tiny_study.paths.processed) / "manifest.csv", keep_default_na=False)
    findings = finding_positions(manifest)
    positive = manifest["label"].astype(str) == "1"
    assert positive.any() and np.isfinite(findings[positive.to_numpy()]).all() and np.isnan(findings[~positive.to_numpy()]).all()
    images = np.load(Path(tiny_study.paths.processed) / "images.npy", mmap_mode="r")
    centre = [images[i, 0, int(round(r)), int(round(c))] for i, (r, c, _) in zip(np.flatnonzero(positive), findings[positive.to_numpy()])]
    assert np.mean(np.array(centre) > 1.0) >= 0.9, "the opacity is bright at the recorded centre (z-scored images)"


def test_evaluation_reports_the_pointing_game(trained_study):
    evaluation = Path(trained_study.paths.experiments) / "evaluation"
    pointing = json.loads((evaluation / "pointing_game.json").read_text())
    assert set(pointing) <= {"internal_test", "external_test"} and pointing
    assert all(r["tolerance"] == "1.5 x radius" and r["layer"] for r in pointing.values())
    captions = json.loads((evaluation / "gradcam" / "captions.json").read_text())
    assert captions and all("predicted" in text for text in captions.values())
