"""Dataset specifications: what to simulate, with which ranges, from which seed.

A specification is a dict (or a YAML / JSON file) merged over :data:`DEFAULT_SPEC`. Ranges
``[lo, hi]`` are sampled uniformly, or log-uniformly for the keys in :data:`LOG_KEYS`;
``{"choices": [a, b, ...]}`` picks one value; a number is a constant.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

from clusterspy.errors import ConfigError

#: Default specification: the wide domain randomisation of the training set.
DEFAULT_SPEC: dict[str, Any] = {
    "seed": 0,
    "n_images": 1000,
    "chunk_size": 32,
    # model input
    "crop_px": 96,
    "pixel_size_A": 0.4,  # model pixel size [Å/px]
    "backend": "fast",
    "backend_options": {},  # extra keywords of clusterspy.simulation.simulate (parameters, frozen_phonons…)
    "compact_field": 0.0,  # > 0: simulate only the metal + this margin [Å], pad with vacuum
    # specimen
    "motifs": {
        "icosahedral": ["mackay"],
        "decahedral": ["ino", "marks"],
        "fcc": ["cuboctahedron", "truncated_octahedron", "octahedron", "wulff", "twinned",
                "lamellar"],
        "amorphous": ["glassy"],
    },
    "size_atoms": [100, 1100],  # log-uniform atom count (nearest achievable)
    "amorphous_size_atoms": None,  # atom-count range of the glassy class (default: size_atoms)
    "elements": ["Au", "Pt", "Pd", "Ag", "Cu"],
    "amorphous_variants": [0, 3],  # pool members [lo, hi) of the relaxed glassy structures
    "zone_axis_fraction": 0.35,  # else uniform random orientation on SO(3)
    "zone_axis_tilt_mrad": [0.0, 50.0],
    "thermal_sigma_A": [0.0, 0.12],  # Gaussian displacement per coordinate [Å]
    "neighbour_probability": 0.2,
    "cut_probability": 0.05,
    # microscope
    "energy_keV": [80.0, 300.0],
    "semiangle_mrad": [15.0, 35.0],
    "detector_inner_mrad": [40.0, 100.0],
    "detector_outer_mrad": [150.0, 250.0],
    "source_size_A": [0.2, 1.2],  # FWHM [Å]
    # an elliptical source (uncorrected two-fold astigmatism) in this share of the images: its extra
    # FWHM [Å] along a uniformly random direction (Microscope.source_elongation_A)
    "source_elongation_probability": 0.0,
    "source_elongation_A": [0.0, 0.0],
    # three-fold astigmatism C23 [Å] (Microscope.three_fold_A) in this share of the images, at a
    # uniformly random azimuth
    "three_fold_probability": 0.0,
    "three_fold_A": [0.0, 0.0],
    "defocus_A": [-20.0, 20.0],
    # acquisition
    "image_pixel_size_A": [0.05, 0.5],  # pixel size of the simulated image [Å/px], log-uniform
    "dose_e_per_A2": [1.0e3, 1.0e6],  # log-uniform
    "jitter_px": [0.0, 0.6],
    "drift_A_per_line": 0.002,  # σ of the drift per scan line [Å/line]
    "shear_px_per_line": 0.002,  # σ of the scan shear [px/line]
    "flyback_px": [0.0, 1.5],  # amplitude of the line-start lag [px]
    "support_probability": 0.6,
    "support_thickness_A": [20.0, 80.0],
    "background": [0.0, 0.3],  # smooth additive background, fraction of the cluster peak
    "gamma": [0.8, 1.25],
    "centre_error_A": 2.5,  # σ of the detector's centring error [Å]
    # model crop
    "field_factor": None,  # crop field ≥ this × cluster diameter (None: fixed crop_px × pixel_size_A)
    "diameter_error": 0.1,  # relative error of the measured diameter that sets the field (uniform ±)
    "scale_error": 0.0,  # pixel-size calibration error, log-uniform in [1/(1+e), 1+e]
    "max_image_px": None,  # the simulated image's pixel size is raised so its field fits in this many px
}

#: Keys sampled log-uniformly.
LOG_KEYS = ("size_atoms", "image_pixel_size_A", "dose_e_per_A2")

#: Renamed keys of the fast backend's ``backend_options``: old name → new name. Specifications
#: written with the old name (and datasets that recorded one) still load, to the same images.
RENAMED_FAST_OPTIONS = {"calibration": "parameters"}


def upgrade_spec(spec: Any) -> Any:
    """``spec`` with the old names of the fast backend's options renamed (a copy; anything but a
    dict of a fast-backend specification comes back unchanged). No warning: for specifications
    recorded by older versions (a dataset's attrs, a saved training config).

    Raises
    ------
    ConfigError
        When an option is given under both its old and its new name.
    """
    if not isinstance(spec, dict) or spec.get("backend", "fast") != "fast":
        return spec
    options = spec.get("backend_options")
    if not isinstance(options, dict) or not set(options) & set(RENAMED_FAST_OPTIONS):
        return spec
    renamed = {}
    for k, v in options.items():
        new = RENAMED_FAST_OPTIONS.get(k, k)
        if new in renamed or (new != k and new in options):
            raise ConfigError(f"backend_options gives {new!r} twice: as {new!r} and as {k!r} "
                              "(its deprecated name); keep one")
        renamed[new] = v
    return {**spec, "backend_options": renamed}


def user_spec(spec: dict[str, Any] | str | Path) -> dict[str, Any]:
    """The keys a specification sets itself (a copy), before the defaults are filled in.

    Parameters
    ----------
    spec : dict or path
        A dict, or a ``.yaml`` / ``.yml`` / ``.json`` file; a ``dataset:`` section of a training
        config is accepted too.
    """
    if isinstance(spec, dict):
        return copy.deepcopy(spec)
    user = read_config(spec)
    return user["dataset"] if isinstance(user.get("dataset"), dict) else user


def load_spec(spec: dict[str, Any] | str | Path | None = None, **overrides: Any) -> dict[str, Any]:
    """Return a full specification: ``DEFAULT_SPEC`` updated by ``spec`` and ``overrides``.

    Parameters
    ----------
    spec : dict or path, optional
        A dict, or a ``.yaml`` / ``.yml`` / ``.json`` file; a ``dataset:`` section of a training
        config is accepted too.

    Raises
    ------
    ConfigError
        If the file is missing or malformed, or a key is unknown.
    """
    user = {} if spec is None else user_spec(spec)
    user.update(overrides)
    unknown = set(user) - set(DEFAULT_SPEC)
    if unknown:
        raise ConfigError(
            f"unknown dataset specification keys: {', '.join(sorted(unknown))}; "
            f"known keys: {', '.join(DEFAULT_SPEC)}"
        )
    out = copy.deepcopy(DEFAULT_SPEC)
    out.update(user)
    upgraded = upgrade_spec(out)
    if upgraded is not out:
        old = sorted(set(out["backend_options"]) & set(RENAMED_FAST_OPTIONS))
        warnings.warn(f"backend_options {', '.join(map(repr, old))} is deprecated; use "
                      f"{', '.join(repr(RENAMED_FAST_OPTIONS[k]) for k in old)} (same values, same images)",
                      DeprecationWarning, stacklevel=2)
        out = upgraded
    if int(out["n_images"]) < 1 or int(out["chunk_size"]) < 1 or int(out["crop_px"]) < 8:
        raise ConfigError("n_images and chunk_size must be ≥ 1 and crop_px ≥ 8")
    return json.loads(json.dumps(out))  # plain JSON types only


def read_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON configuration file into a dict."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"configuration file not found: {p}")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:
        raise ConfigError(f"cannot parse {p}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p} must hold a mapping of keys to values")
    return data
