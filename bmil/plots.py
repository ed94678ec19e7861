"""Matplotlib, headless: evaluation runs on servers and in worker processes. Domain figures live
with their domain (``bmil/domains/<family>/figure.py``); save a figure with ``fig.savefig``."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402,F401  (imported from here, after the backend is set)
import numpy as np  # noqa: E402


def figure_to_array(fig) -> np.ndarray:
    """RGB uint8 (H, W, 3) pixels of a figure, for image loggers such as TensorBoard."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
