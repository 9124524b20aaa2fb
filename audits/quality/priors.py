"""Model-independent prior maps: what an explanation must beat to show it knows the model.

An edge map ranks pixels by the image's own contrast. Many saliency maps look
like edge maps (Adebayo et al. 2018 showed edge detectors pass visual
inspection), so a method whose deletion curve is no better than "remove the
strongest edges first" has not shown anything about the model. The edge map
is scikit-image's Sobel magnitude of the image's channel mean.
"""

from __future__ import annotations

import numpy as np
from skimage.filters import sobel
from torch import Tensor


def edge_maps(images: Tensor) -> np.ndarray:
    """(N,C,H,W) images (any scaling) -> (N,H,W) float32 Sobel edge magnitude of the channel mean."""
    grey = images.detach().float().mean(dim=1).cpu().numpy()
    return np.stack([sobel(g) for g in grey]).astype(np.float32) if len(grey) else np.zeros((0, *grey.shape[1:]), np.float32)


PRIORS = {"edges": edge_maps}
