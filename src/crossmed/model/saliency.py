"""Grad-CAM overlays (MONAI's GradCAM) for the most confident correct and wrong test cases of each set.

MONAI's default post-processing (`default_normalizer`) maps each map's maximum to 0 and its minimum to 1;
crossmed scales the other way (`relevance_scale`), so 1 (red) is where the class evidence is strongest.
"""

import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from monai.transforms import ScaleIntensity  # noqa: E402
from monai.visualize import GradCAM  # noqa: E402

from crossmed.errors import ConfigError  # noqa: E402
from crossmed.files import atomic_path, write_json_atomic  # noqa: E402

log = logging.getLogger("crossmed.evaluate")


MIN_MAP_EDGE = 8  # coarser maps cannot say where the evidence is (the pointing game at 64 px: 4 x 4 maps hit a third of findings)


def saliency_layer(net: torch.nn.Module, input_shape: tuple[int, ...]) -> str:
    """Return the deepest top-level block holding a convolution whose feature map is at least MIN_MAP_EDGE pixels on each
    side for an input of `input_shape` (C, *spatial): ResNet layer4 at 224 px, layer3 at 64 px."""
    names = [name for name, child in net.named_children()
             if any(isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d)) for m in child.modules())]
    if not names:
        raise ConfigError("evaluate.gradcam.target_layer", "the network has no convolution layer; name a layer or set cases: 0")
    edges, hooks = {}, []
    for name in names:
        hooks.append(getattr(net, name).register_forward_hook(
            lambda module, args, out, name=name: edges.__setitem__(
                name, min(out.shape[2:]) if isinstance(out, torch.Tensor) and out.ndim > 3 else 0)))
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            net(torch.zeros((1, *input_shape), device=next(net.parameters()).device))
    except Exception as err:  # a network this probe cannot run: keep the last convolutional block
        log.info("Grad-CAM layer: could not measure feature maps (%s); using %s", err, names[-1])
        return names[-1]
    finally:
        net.train(was_training)
        for hook in hooks:
            hook.remove()
    wide = [name for name in names if edges.get(name, 0) >= MIN_MAP_EDGE]
    if not wide:  # small images: the deepest of the blocks with the finest map
        finest = max(edges.get(name, 0) for name in names)
        wide = [name for name in names if edges.get(name, 0) == finest]
    return wide[-1]


def predicted_confidence(table: pd.DataFrame) -> np.ndarray:
    """Return each row's probability of its predicted class (binary 'probability' column, or the p_<class> columns)."""
    predicted = table["predicted"].to_numpy().astype(int)
    if "probability" in table:
        return np.where(predicted == 1, table["probability"], 1 - table["probability"])
    columns = sorted(table.filter(regex=r"^p_\d+$").columns, key=lambda c: int(c[2:]))
    return table[columns].to_numpy()[np.arange(len(table)), predicted]


def chosen_cases(table: pd.DataFrame, cases: int) -> pd.DataFrame:
    """Return up to `cases` most confident correct and `cases` most confident wrong rows, with a 'kind' column."""
    confidence = pd.Series(predicted_confidence(table), index=table.index)
    ranked = table.assign(confidence=confidence).sort_values("confidence", ascending=False, kind="stable")
    correct = ranked[ranked["actual"] == ranked["predicted"]].head(cases).assign(kind="correct")
    wrong = ranked[ranked["actual"] != ranked["predicted"]].head(cases).assign(kind="wrong")
    return pd.concat([correct, wrong])


def _middle_slice(array: np.ndarray) -> np.ndarray:
    """Return a 2D view: the array itself, or its middle slice along the last axis for 3D."""
    return array[..., array.shape[-1] // 2] if array.ndim == 3 else array


def relevance_scale(cam: torch.Tensor) -> torch.Tensor:
    """Scale each map of a (N, 1, *spatial) batch to [0, 1], its maximum (the strongest evidence) to 1."""
    scaler = ScaleIntensity(minv=0.0, maxv=1.0)
    return torch.stack([torch.as_tensor(scaler(c)) for c in cam]).to(cam.device)


def grad_cam(net: torch.nn.Module, target_layer: str, input_shape: tuple[int, ...]) -> tuple[GradCAM, str]:
    """Return MONAI's GradCAM on `target_layer` ('auto': see saliency_layer) with relevance_scale, and the layer's name."""
    layer = saliency_layer(net, input_shape) if target_layer == "auto" else target_layer
    return GradCAM(nn_module=net, target_layers=layer, postprocessing=relevance_scale), layer


def overlay_png(image: np.ndarray, cam: np.ndarray, title: str, path: Path) -> None:
    """Write the first channel of `image` in grey beside it with the Grad-CAM map over it, and a labelled colour bar."""
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.9), dpi=100)
    grey = _middle_slice(image[0])
    for ax in axes:
        ax.imshow(grey, cmap="gray")
        ax.axis("off")
    axes[0].set_title("image", fontsize=12)
    axes[1].set_title("Grad-CAM", fontsize=12)
    heat = axes[1].imshow(_middle_slice(cam), cmap="jet", alpha=0.45, vmin=0, vmax=1)
    bar = fig.colorbar(heat, ax=axes, fraction=0.046, pad=0.03, ticks=[0, 0.5, 1])
    bar.ax.set_yticklabels(["0 least", "0.5", "1 most"], fontsize=11)
    bar.set_label("relevance to the predicted class", fontsize=11)
    fig.suptitle(title, fontsize=12)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def write_gradcam(net: torch.nn.Module, images, table: pd.DataFrame, classes: list[str], cases: int, target_layer: str,
                  out_dir: Path, device: torch.device) -> list[str]:
    """Write overlays for the chosen cases of one set (a single-label predictions table); return the written file names."""
    if cases <= 0 or table.empty:
        return []
    cam, layer = grad_cam(net, target_layer, tuple(np.asarray(images[0]).shape))
    written, captions, counts = [], {}, {"correct": 0, "wrong": 0}
    for position, row in chosen_cases(table, cases).iterrows():
        counts[row["kind"]] += 1
        image = np.asarray(images[position], dtype=np.float32)
        x = torch.as_tensor(image[None], device=device)
        try:
            with torch.enable_grad():
                heat = cam(x, class_idx=int(row["predicted"]))[0, 0].detach().cpu().numpy()
        except Exception as err:  # e.g. a transformer whose blocks do not return a feature map
            log.warning("Grad-CAM skipped: layer '%s' of %s gives no feature map to weight (%s)", layer, type(net).__name__, err)
            return written
        name = f"{row['set']}_{row['kind']}_{counts[row['kind']]:02d}.png"
        caption = (f"{row['set'].replace('_', ' ')}, patient {row['patient_id']}: actual {classes[int(row['actual'])]}, "
                   f"predicted {classes[int(row['predicted'])]} (P = {row['confidence']:.2f}); Grad-CAM at {layer}")
        overlay_png(image, heat, f"actual {classes[int(row['actual'])]}, predicted {classes[int(row['predicted'])]} "
                                 f"(P = {row['confidence']:.2f})", out_dir / name)
        written.append(name)
        captions[name] = caption
    if captions:  # read by the report: captions in text a person can read, beside each figure
        index = out_dir / "captions.json"
        known = json.loads(index.read_text()) if index.is_file() else {}
        write_json_atomic(index, {**known, **captions})
    log.info("Grad-CAM (%s) for %d %s cases (evaluation/%s/)", layer, len(written), table["set"].iloc[0], out_dir.name)
    return written
