"""Class probabilities of a network over an array of images, in batches, without gradients."""

import numpy as np
import torch


@torch.no_grad()
def predict_probabilities(net: torch.nn.Module, images: np.ndarray, device: torch.device, batch_size: int = 256,
                          channels_last: bool = False) -> np.ndarray:
    """Return P(positive class) for each image of an (N,1,H,W) array."""
    net.eval()
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.as_tensor(np.ascontiguousarray(images[start:start + batch_size]), device=device)
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        out.append(torch.softmax(net(batch).float(), dim=1)[:, 1].cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
