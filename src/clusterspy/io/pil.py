"""PNG and JPEG images (Pillow): greyscale data, the pixel size must come from the user."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clusterspy.errors import CalibrationError, ImageDataError, InputFileError
from clusterspy.image import check_shape
from clusterspy.io.formats import ReadResult, read_failure


def read_pil(p: Path, lazy: bool = False) -> ReadResult:
    """Read a PNG/JPEG as a greyscale image (a grey RGB image is averaged); no pixel size."""
    try:
        from PIL import Image as PILImage
    except ImportError:  # pragma: no cover
        raise InputFileError("reading PNG/JPEG needs Pillow: pip install pillow") from None
    try:
        with PILImage.open(p) as im:
            w, h = im.size
            n_frames = getattr(im, "n_frames", 1)
            check_shape((h, w), source=p.name)
            if n_frames > 1:
                raise ImageDataError(f"{p.name} is an animated image with {n_frames} frames")
            mode = im.mode
            if mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LA"):
                rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
                spread = float(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).max())
                if spread > 8.0:
                    raise ImageDataError(
                        f"{p.name} is a colour image (mode {mode}); "
                        "save it as a single-channel greyscale image"
                    )
                data = rgb.mean(axis=2)
            else:
                data = np.asarray(im)
    except (ImageDataError, CalibrationError):
        raise
    except Exception as exc:
        raise read_failure(p, exc) from None
    return data, None, {"source": str(p), "format": p.suffix.lower().lstrip(".")}
