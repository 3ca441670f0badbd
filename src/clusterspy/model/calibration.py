"""Deprecated name of :mod:`clusterspy.model.confidence_calibration`.

"Calibration" also means the pixel size and the fast simulator's fitted parameters, so the
classifier's temperature and "unknown" threshold moved to a module that says which one it is.
"""

from __future__ import annotations

import warnings

from clusterspy.model.confidence_calibration import *  # noqa: F403
from clusterspy.model.confidence_calibration import __all__, _softmax  # noqa: F401

warnings.warn("clusterspy.model.calibration is deprecated; use clusterspy.model.confidence_calibration",
              DeprecationWarning, stacklevel=2)
