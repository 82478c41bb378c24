"""The one place that decides CPU or CUDA.

Order: the explicit argument, then ``$LANGDREAM_DEVICE``, then auto. Auto picks CUDA only when
torch sees a GPU *and* the input is large enough to be worth moving (small inputs stay on the
CPU). Asking for CUDA where there is none is an error, never a silent CPU fallback.
"""

from __future__ import annotations

import logging
import os

from langdream.config import DEFAULT_GPU_MIN_ITEMS, DEVICE_ENV
from langdream.errors import DeviceError

logger = logging.getLogger("langdream.device")


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_device(
    explicit: str | None = None,
    *,
    items: int | None = None,
    min_gpu_items: int = DEFAULT_GPU_MIN_ITEMS,
    purpose: str = "compute",
) -> str:
    """Return ``"cpu"`` or a CUDA device string for ``items`` inputs of ``purpose``."""
    requested, source = explicit, "argument"
    if requested is None:
        requested, source = os.environ.get(DEVICE_ENV) or None, DEVICE_ENV
    if requested is not None:
        requested = requested.strip().lower()
        if requested == "auto":
            requested = None
        elif requested != "cpu" and not requested.startswith("cuda"):
            raise DeviceError(
                f"unknown device {requested!r} (from {source})",
                hint="use 'cpu', 'cuda', 'cuda:N' or 'auto'",
            )
        elif requested.startswith("cuda") and not cuda_available():
            raise DeviceError(
                f"device {requested!r} was asked for (from {source}) but torch sees no CUDA GPU",
                hint="install a CUDA build of torch on a GPU machine, or use device='cpu'",
            )
    if requested is None:
        big_enough = items is None or items >= min_gpu_items
        requested = "cuda" if big_enough and cuda_available() else "cpu"
        source = "auto" + (f", {items} items" if items is not None else "")
    logger.debug("%s on %s (%s)", purpose, requested, source)
    return requested
