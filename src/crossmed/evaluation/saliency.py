"""Grad-CAM overlays (MONAI's GradCAM) for the most confident correct and wrong test cases of each set."""

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from monai.visualize import GradCAM  # noqa: E402

from crossmed.errors import ConfigError  # noqa: E402
from crossmed.files import atomic_path  # noqa: E402

log = logging.getLogger("crossmed.evaluate")


def last_convolutional_block(net: torch.nn.Module) -> str:
    """Return the last top-level block holding a convolution (ResNet layer4, DenseNet features, EfficientNet _conv_head)."""
    for name, child in reversed(list(net.named_children())):
        if any(isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d)) for module in child.modules()):
            return name
    raise ConfigError("evaluate.gradcam.target_layer", "the network has no convolution layer; name a layer or set cases: 0")


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


def overlay_png(image: np.ndarray, cam: np.ndarray, title: str, path: Path) -> None:
    """Write the first channel of `image` in grey with the Grad-CAM map over it in colour."""
    fig, axes = plt.subplots(1, 2, figsize=(6, 3.2), dpi=110)
    grey = _middle_slice(image[0])
    for ax in axes:
        ax.imshow(grey, cmap="gray")
        ax.axis("off")
    axes[1].imshow(_middle_slice(cam), cmap="jet", alpha=0.4, vmin=0, vmax=1)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_gradcam(net: torch.nn.Module, images, table: pd.DataFrame, classes: list[str], cases: int, target_layer: str,
                  out_dir: Path, device: torch.device) -> list[str]:
    """Write overlays for the chosen cases of one set (a single-label predictions table); return the written file names."""
    if cases <= 0 or table.empty:
        return []
    layer = last_convolutional_block(net) if target_layer == "auto" else target_layer
    cam = GradCAM(nn_module=net, target_layers=layer)
    written, counts = [], {"correct": 0, "wrong": 0}
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
        title = (f"{row['set']} {row['patient_id']}\nactual {classes[int(row['actual'])]}, predicted "
                 f"{classes[int(row['predicted'])]} (P = {row['confidence']:.2f}), Grad-CAM at {layer}")
        overlay_png(image, heat, title, out_dir / name)
        written.append(name)
    log.info("Grad-CAM (%s) for %d %s cases (evaluation/%s/)", layer, len(written), table["set"].iloc[0], out_dir.name)
    return written
