"""End-to-end workflows behind the CLI commands ``classify``, ``series``, ``simulate`` and
``demo``, and the figures and HTML reports of ``series`` and ``thermo``.

Each function does the work and returns data or paths; the CLI only parses and prints. The
reports are written here, one layer above the analysis (the core never imports ``plots``,
``report`` or ``explain``): :func:`classify_series` runs the core's
:func:`clusterspy.series.classify_series` and then :func:`write_series_report`;
:func:`write_thermo_report` writes the core's ``thermo.json``
(:func:`clusterspy.thermo.write_thermo_json`) and then :func:`write_thermo_figures`.

Verification (``clusterspy classify --verify``) lives here too, because it joins two parts of the
core that do not know each other: :func:`verify_clusters` fits a 3D model (:mod:`clusterspy.fit`)
to each cluster the network (:mod:`clusterspy.predict`) labelled, and the domain's rule
(:func:`clusterspy.domain.judge_fit`) decides whether the label still stands.
"""

from __future__ import annotations

import csv
import io as _stdio
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clusterspy.io import write_bytes_atomic, write_text_atomic
from clusterspy.isomers import CLASSES

if TYPE_CHECKING:
    from clusterspy.predict import ClusterResult
    from clusterspy.series import SeriesResult

#: Columns of ``results.csv`` (one row per cluster per frame).
RESULT_COLUMNS: tuple[str, ...] = (
    "file",
    "frame",
    "cluster",
    "x_px",
    "y_px",
    "diameter_nm",
    "label",
    "reason",
    "confidence",
    *(f"p_{c}" for c in CLASSES),
    "ood_distance",
    "model",
    "pixel_size_factor",
)

#: Columns added to ``results.csv`` when the labels were verified by a structure fit
#: (``classify --verify``; :data:`clusterspy.predict.FIT_FIELDS`).
FIT_COLUMNS: tuple[str, ...] = ("fit_isomer", "fit_form", "fit_ncc", "fit_zone_axis", "fit_reason",
                                "fit_note")

#: The built-in example series shipped inside the package.
EXAMPLE_SERIES = Path(__file__).parent / "data" / "example_series.npz"


def classify_file(
    path: str | os.PathLike,
    model: Any,
    pixel_size_A: float | None = None,
    *,
    on_frame: Any = None,
    strict: bool = False,
    signal: int | str | None = None,
    verify: bool = False,
    element: str = "Au",
    microscope: Any = None,
    fits: dict[tuple[int, int], Any] | None = None,
    calibrate: bool = False,
    **options: Any,
) -> tuple[list[ClusterResult], list[dict[str, Any]], dict[str, Any]]:
    """Classify every cluster in every frame of one file, going on past a frame that fails.

    Parameters
    ----------
    path : path-like
        An image file; a multi-frame file gives one set of results per frame.
    model : clusterspy.predict.Model
        The loaded model.
    pixel_size_A : float, optional
        Pixel size [Å/px]; overrides the file's calibration. Needed for files without one.
    on_frame : callable, optional
        Called with no argument after each frame (for progress).
    strict : bool
        Raise the first user-caused error instead of recording it.
    signal : int or str, optional
        Which signal of a multi-signal file (index or title; see :func:`clusterspy.io.read_image`).
    verify : bool
        Check every label that stands with a structure fit (:func:`verify_clusters`): 4–8 s per
        cluster of ≤ 923 atoms on 2 cores, up to a minute for a 6 nm particle.
    element : str
        With ``verify``: the metal of the clusters (Au, Pt, Pd, Ag, Cu, ...).
    microscope : clusterspy.simulation.Microscope, optional
        With ``verify``: beam energy [keV] and convergence semi-angle [mrad] of the data (default
        200 keV, 25 mrad).
    fits : dict, optional
        With ``verify``: filled with ``{(frame, cluster): StructureFit}`` of the clusters fitted
        (for their figures, :func:`write_fit_figures`).
    calibrate : bool
        Check each frame's pixel size against the lattice of its crystalline clusters
        (:func:`calibrate_pixel_size`, ``element`` the ruler) and, when it is off by more than
        :data:`CALIBRATION_TOLERANCE`, classify the frame again at the corrected pixel size.
    **options
        Keywords of :func:`clusterspy.classify` (``contrast``, ``min_size_nm``,
        ``max_size_nm``, ``border``).

    Returns
    -------
    results : list of ClusterResult
        In frame order, then cluster order (with ``verify``, each with its ``fit``).
    failures : list of dict
        ``{"file", "frame", "error", "message"}`` per user-caused error (``frame`` None when the
        file itself could not be read: missing, unreadable, no pixel size).
    info : dict
        ``frames``, ``pixel_size_A`` [Å/px], ``pixel_size_source`` and ``file_pixel_size_A``
        (empty when the file could not be read); with ``calibrate`` also ``calibration`` (one
        :meth:`PixelSizeCalibration.to_dict` per frame, with its ``frame`` and ``message``), and
        ``pixel_size_A`` the pixel size used (the first frame's), ``pixel_size_source``
        ``"lattice"`` when it was corrected.
    """
    from clusterspy.errors import ClusterSpyError
    from clusterspy.io import read_series
    from clusterspy.predict import classify

    def failure(frame: int | None, exc: ClusterSpyError) -> dict[str, Any]:
        if strict:
            raise exc
        return {"file": str(path), "frame": frame, "error": type(exc).__name__,
                "message": " ".join(str(exc).split())}

    try:
        frames = read_series(path, pixel_size_A=pixel_size_A, signal=signal)
    except ClusterSpyError as exc:
        return [], [failure(None, exc)], {}
    info = {"frames": len(frames), "pixel_size_A": frames.pixel_size_A,
            "pixel_size_source": frames.metadata.get("pixel_size_source"),
            "file_pixel_size_A": frames.metadata.get("file_pixel_size_A")}
    results: list[ClusterResult] = []
    failures: list[dict[str, Any]] = []
    calibrations: list[dict[str, Any]] = []
    for index in range(len(frames)):
        try:
            frame = frames[index]
            found = classify(frame, model=model, file=str(path), frame=index, **options)
            if calibrate:
                cal = calibrate_pixel_size(frame, found, element=element, microscope=microscope)
                calibrations.append({"frame": index, **cal.to_dict(), "message": cal.message()})
                if cal.corrected:
                    from clusterspy.image import Image

                    frame = Image(frame.data, cal.pixel_size_A, frame.metadata)
                    found = classify(frame, model=model, file=str(path), frame=index, **options)
            if verify:
                done = verify_clusters(frame, found, element=element, microscope=microscope)
                if fits is not None:
                    fits.update({(index, k): f for k, f in done.items()})
            results.extend(found)
        except ClusterSpyError as exc:
            failures.append(failure(index, exc))
        if on_frame is not None:
            on_frame()
    if calibrate:
        info["calibration"] = calibrations
        if calibrations and calibrations[0]["corrected"]:
            info["pixel_size_A"], info["pixel_size_source"] = calibrations[0]["pixel_size_A"], "lattice"
    return results, failures, info


def overlay_name(stem: str, frame: int, n_frames: int) -> str:
    """File name of the overlay PNG of one frame: ``<stem>_overlay.png`` or ``<stem>_frame<NNNN>.png``."""
    return f"{stem}_overlay.png" if n_frames == 1 else f"{stem}_frame{frame:04d}.png"


def verify_clusters(
    image: Any,
    results: Sequence[ClusterResult],
    pixel_size_A: float | None = None,
    *,
    element: str = "Au",
    microscope: Any = None,
    forms: tuple[str, ...] | None = None,
) -> dict[int, Any]:
    """Check every label that stands with a structure fit, in place; what ``classify --verify`` does.

    Each cluster whose label stands (``reason`` None) gets the 3D atomic model whose fast
    simulation matches it best (:func:`clusterspy.fit.fit_cluster`, at the cluster the network
    judged: nothing is detected twice); the fit's isomer, form, NCC, zone axis and own reason go
    into the result's ``fit`` (:data:`clusterspy.predict.FIT_FIELDS`), and
    :func:`clusterspy.domain.judge_fit` decides: a conclusive fit of another isomer makes the
    label ``"unknown"`` with reason ``"fit_disagrees"`` (probabilities kept); an inconclusive fit
    leaves the label standing, its reason recorded. Clusters with a reason are not fitted (their
    ``fit`` fields are None).

    Parameters
    ----------
    image : Image, numpy.ndarray, path or hyperspy Signal2D
        The image the results were made from.
    results : sequence of ClusterResult
        Its results (:func:`clusterspy.classify`); changed in place.
    pixel_size_A : float, optional
        Pixel size [Å/px], as given to :func:`clusterspy.classify`.
    element : str
        The metal (Au, Pt, Pd, Ag, Cu, ...).
    microscope : clusterspy.simulation.Microscope, optional
        Beam energy [keV] and convergence semi-angle [mrad] of the data (default 200 keV, 25 mrad).
    forms : tuple of str, optional
        The model forms tried (keys of :data:`clusterspy.fit.library.FORMS`); default all.

    Returns
    -------
    dict
        ``{cluster: StructureFit}`` of the clusters fitted.
    """
    from clusterspy.fit import fit_cluster
    from clusterspy.io import as_image
    from clusterspy.predict import FIT_FIELDS

    img = as_image(image, pixel_size_A)
    fits = {}
    for r in results:
        r.fit = dict.fromkeys(FIT_FIELDS)
        if r.reason is not None or r.diameter_nm is None:
            continue
        others = [(o.x_px, o.y_px, _detected_diameter_A(o.diameter_nm)) for o in results
                  if o is not r and o.diameter_nm is not None]
        f = fit_cluster(img, r.x_px, r.y_px, _detected_diameter_A(r.diameter_nm),
                        element=element, microscope=microscope, forms=forms, cluster=r.cluster,
                        others=others)
        r.fit = {"isomer": f.isomer, "form": f.form, "ncc": None if f.ncc is None else round(float(f.ncc), 4),
                 "zone_axis": f.zone_axis, "reason": f.reason, "note": f.note}
        r.label, r.reason, _ = judged_by_fit(r.label, r.reason, f)
        fits[int(r.cluster)] = f
    return fits


#: Reasons of clusters whose lattice may still calibrate the pixel size (:func:`calibrate_pixel_size`):
#: a wrong pixel size itself gives low confidence, a second opinion that disagrees, out of
#: distribution and a wrong size.
CALIBRATING_REASONS = (None, "low_confidence", "models_disagree", "out_of_distribution", "too_large",
                       "too_small")
#: Clusters (the largest) whose lattice calibrates one image.
CALIBRATION_CLUSTERS = 3
#: A median lattice scale within this of 1 leaves the pixel size as it is (the refinement's scatter
#: on PRISM images at the true pixel size: decahedra's strained lattices 0.97–1.035).
CALIBRATION_TOLERANCE = 0.05


@dataclass
class PixelSizeCalibration:
    """What the clusters' lattice says of an image's pixel size (:func:`calibrate_pixel_size`).

    Attributes
    ----------
    given_A : float
        The pixel size given [Å/px] (the file's, or ``--pixel-size``).
    pixel_size_A : float
        The pixel size to use [Å/px]: ``given_A / scale`` when the lattice departs from the
        element's by more than :data:`CALIBRATION_TOLERANCE`, else ``given_A``.
    scale : float or None
        The median of the clusters' lattice scales (:func:`clusterspy.fit.measure_lattice`); None
        when no cluster's lattice gave one.
    measurements : dict
        ``{cluster: LatticeMeasurement}`` of the clusters measured (a series':
        ``{"frame i, cluster j": …}``).
    element : str
        The metal whose lattice constant was the ruler.
    at_bound : bool
        The scale is at an end of the fit's range (±15 %): the error may be larger.
    not_measured : dict
        ``{reason: count}`` of the clusters not measured (cut by the edge, beside a neighbour, …).
    """

    given_A: float
    pixel_size_A: float
    scale: float | None
    measurements: dict[Any, Any]
    element: str
    at_bound: bool = False
    not_measured: dict[str, int] = field(default_factory=dict)

    @property
    def corrected(self) -> bool:
        """Whether the pixel size used differs from the one given."""
        return self.pixel_size_A != self.given_A

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (each cluster's ``scale``, ``lattice_ncc`` and ``reason``)."""
        def r4(v: float | None) -> float | None:
            return None if v is None else round(float(v), 4)

        return {"given_pixel_size_A": self.given_A, "pixel_size_A": round(self.pixel_size_A, 5),
                "scale": r4(self.scale), "element": self.element, "at_bound": self.at_bound,
                "corrected": self.corrected, "not_measured": dict(self.not_measured),
                "clusters": {str(k): {"scale": r4(m.scale), "lattice_ncc": r4(m.lattice_ncc),
                                      "fitted_scale": r4(m.fitted_scale), "reason": m.reason}
                             for k, m in self.measurements.items()}}

    def message(self) -> str:
        """One line for the user."""
        from clusterspy.fit.calibrate import LATTICE_NCC_MIN

        ms = self.measurements
        if not ms:
            why = ", ".join(f"{n} {r}" for r, n in sorted(self.not_measured.items(), key=lambda t: -t[1]))
            line = (f"no cluster to measure the lattice of (of those found: {why})" if why else
                    "no cluster found to measure the lattice of") + f"; {self.given_A:g} Å/px kept"
            # scale_mismatch has a known false alarm: very sharp images whose higher-order fringes
            # outshine the fundamentals (a newcomer's exactly calibrated simulation was told here that its
            # pixel size was "likely too small by more than 15 %", stop 42)
            for reason, fringes, way, unless in (
                    ("scale_mismatch", "finer", "small",
                     ", unless the image is very sharp (then finer fringes fool that rule: check by hand)"),
                    ("pixel_size_too_large", "coarser", "large", "")):
                if self.not_measured.get(reason):
                    line += (f" — {reason}: their fringes are {fringes} than any metal lattice's, so the "
                             f"pixel size given is likely too {way} by more than the ±15 % --calibrate can "
                             f"measure{unless}")
            return line
        if self.scale is None:
            words = {"no_fringes": "no lattice fringes (amorphous or unresolved)",
                     "size": "too small or large to fit"}
            who = {k: f"cluster {k}" if isinstance(k, int) else str(k) for k in ms}
            why = [f"{who[k]}: no {self.element} model's columns line up with the data's within ±15 % of "
                   f"{self.given_A:g} Å/px (best {m.lattice_ncc:.2f} < {LATTICE_NCC_MIN})"
                   if m.reason == "columns_unmatched" else f"{who[k]}: {words[str(m.reason)]}"
                   for k, m in ms.items()]
            return (f"the pixel size could not be checked ({'; '.join(why)}): it may be more than 15 % off, "
                    f"or the clusters not {self.element} (--element); {self.given_A:g} Å/px kept, and any "
                    "label rests on it unchecked (--verify fits each labelled cluster; the labels are not "
                    "measured beyond ±15 %)")
        n = sum(m.scale is not None for m in ms.values())
        seen = f"the lattice of {n} cluster{'' if n == 1 else 's'}, if {self.element} (--element),"
        if not self.corrected:
            return f"{seen} agrees with {self.given_A:g} Å/px (scale {self.scale:.3f}); kept"
        more = " or more — the fit's limit: check the calibration" if self.at_bound else ""
        return (f"{seen} says the pixel size is {self.pixel_size_A:.4g} Å/px, not {self.given_A:g} "
                f"({abs(self.scale - 1) * 100:.0f} % off{more}); classified at {self.pixel_size_A:.4g} Å/px")


def calibrate_pixel_size(
    image: Any,
    results: Sequence[ClusterResult],
    pixel_size_A: float | None = None,
    *,
    element: str = "Au",
    microscope: Any = None,
) -> PixelSizeCalibration:
    """The pixel size an image's crystalline clusters imply, from their lattice against the element's.

    The :data:`CALIBRATION_CLUSTERS` largest clusters of ``results`` that are neither cut by the
    edge, beside a neighbour, nor unresolved (:data:`CALIBRATING_REASONS`) get a short structure
    fit of the crystalline models (:func:`clusterspy.fit.measure_lattice`: a few seconds each, 20
    s for a 6 nm particle); the median of the scales that stand, when it departs from 1 by more
    than :data:`CALIBRATION_TOLERANCE`, corrects the pixel size. What ``classify --calibrate`` does
    before it classifies the image again at the corrected pixel size. The element is the ruler:
    a wrong one gives a wrong pixel size (Pt's particle told Au: 7 % off).

    Parameters
    ----------
    image : Image, numpy.ndarray, path or hyperspy Signal2D
        The image the results were made from.
    results : sequence of ClusterResult
        Its results (:func:`clusterspy.classify`).
    pixel_size_A : float, optional
        Pixel size [Å/px], as given to :func:`clusterspy.classify`.
    element : str
        The metal of the clusters (its lattice constant is the ruler).
    microscope : clusterspy.simulation.Microscope, optional
        Beam energy [keV] and convergence semi-angle [mrad] (default 200 keV, 25 mrad).

    Returns
    -------
    PixelSizeCalibration
        The pixel size to use and the evidence.
    """
    from clusterspy.fit import measure_lattice
    from clusterspy.io import as_image

    img = as_image(image, pixel_size_A)
    usable = sorted((r for r in results if r.reason in CALIBRATING_REASONS and r.diameter_nm is not None),
                    key=lambda r: -float(r.diameter_nm))[:CALIBRATION_CLUSTERS]
    measured = {int(r.cluster): measure_lattice(img, r.x_px, r.y_px, _detected_diameter_A(r.diameter_nm),
                                                element=element, microscope=microscope) for r in usable}
    return _calibration_of(float(img.pixel_size_A), measured, element, _not_measured(results, usable))


def _not_measured(results: Sequence[ClusterResult], usable: Sequence[ClusterResult]) -> dict[str, int]:
    """``{reason: count}`` of the clusters of ``results`` not among ``usable``."""
    from collections import Counter

    ids = {id(r) for r in usable}
    return dict(Counter(str(r.reason) for r in results if id(r) not in ids))


def _calibration_of(given_A: float, measured: dict[Any, Any], element: str,
                    not_measured: dict[str, int] | None = None) -> PixelSizeCalibration:
    """The :class:`PixelSizeCalibration` of lattice measurements (``{cluster: LatticeMeasurement}``)
    made at ``given_A`` [Å/px]: the median of the scales that stand decides (``not_measured``:
    ``{reason: count}`` of the clusters left out)."""
    import numpy as np

    from clusterspy.fit.search import SCALE_RANGE

    found = [m.scale for m in measured.values() if m.scale is not None]
    skipped = dict(not_measured or {})
    if not found:
        return PixelSizeCalibration(given_A, given_A, None, measured, element, not_measured=skipped)
    scale = float(np.median(found))
    lo, hi = SCALE_RANGE
    at_bound = scale <= lo + 0.01 or scale >= hi - 0.01
    used = given_A / scale if abs(scale - 1.0) > CALIBRATION_TOLERANCE else given_A
    return PixelSizeCalibration(given_A, used, scale, measured, element, at_bound, skipped)


#: Frames of a series, from the first, whose clusters may calibrate its pixel size
#: (:func:`calibrate_series_pixel_size`): their clusters are measured until
#: :data:`CALIBRATION_CLUSTERS` scales stand, and the median of those decides.
SERIES_CALIBRATION_FRAMES = 3
#: File in a series' output folder that holds its calibration: a resumed run uses it again.
SERIES_CALIBRATION_FILE = "calibration.json"


def calibrate_series_pixel_size(
    source: Any,
    pixel_size_A: float | None = None,
    *,
    model: Any = None,
    element: str = "Au",
    microscope: Any = None,
    contrast: str = "auto",
    signal: int | str | None = None,
    out: str | os.PathLike | None = None,
    resume: bool = True,
    announce: Any = None,
) -> dict[str, Any]:
    """The pixel size a series' clusters imply: :func:`calibrate_pixel_size` of its first frames.

    What ``clusterspy series --calibrate`` does before the series is classified. The clusters of
    the :data:`SERIES_CALIBRATION_FRAMES` first frames are measured, frame by frame, until
    :data:`CALIBRATION_CLUSTERS` lattice scales stand (one frame of a single particle gives one, so
    its noise is not the series'); the median of the scales found decides (a frame without one —
    no cluster, amorphous, unresolved — adds none), and the whole series is classified at that
    pixel size. With ``out`` the calibration is kept in
    ``out/calibration.json``, and a resumed run (same input, given pixel size, element and
    microscope) takes it from there instead of fitting again, so that its frames are classified
    at the same pixel size as the first run's.

    Parameters
    ----------
    source, pixel_size_A, signal
        As for :func:`clusterspy.series.classify_series`; ``source`` a file, a folder or a 3-D
        array (whose pixel size the series is classified at), not images or an iterator.
    model : object, optional
        The classifier (default: the shipped one).
    element : str
        The metal of the clusters (its lattice constant is the ruler).
    microscope : clusterspy.simulation.Microscope, optional
        Beam energy [keV] and convergence semi-angle [mrad] (default 200 keV, 25 mrad).
    contrast : str
        As for :func:`clusterspy.classify`.
    out : path, optional
        The series' output folder.
    resume : bool
        Take the calibration of an earlier run in ``out`` when it was made for the same input.
    announce : callable, optional
        ``announce(line)`` before each frame's fit (they take seconds).

    Returns
    -------
    dict
        :meth:`PixelSizeCalibration.to_dict` of the frames' clusters (keyed ``"frame i, cluster
        j"``) with ``frames`` (those measured), ``message`` (one line for the user) and ``reused``
        (taken from ``out``).

    Raises
    ------
    ClusterSpyError
        The source cannot be read, allows no random access, or its first frame is refused.
    """
    from clusterspy.errors import ClusterSpyError, ConfigError
    from clusterspy.io import Series
    from clusterspy.predict import classify
    from clusterspy.series.source import open_frames

    frames = open_frames(source, pixel_size_A, signal)
    if not isinstance(frames.frames, Series):  # images carry their own pixel size
        raise ConfigError("--calibrate (calibrate=True) needs a file, a folder or a 3-D array with its pixel "
                          "size, not images or an iterator")
    key = {"input": frames.identity, "given_pixel_size_A": frames.pixel_size_A, "element": element,
           "microscope": None if microscope is None else repr(microscope)}
    key = json.loads(json.dumps(key, default=str))
    path = None if out is None else Path(out) / SERIES_CALIBRATION_FILE
    # another calibration's results in the folder: the series' own check refuses to mix with them, and
    # their calibration.json must stay as it is (it describes them)
    keep_file = False
    if path is not None and resume and path.is_file():
        try:
            kept = json.loads(path.read_text())
        except (OSError, ValueError):
            kept = {}
        if kept.get("key") == key:
            return {**kept["calibration"], "reused": True}
        keep_file = (path.parent / "frames.csv").is_file()
        old_key = kept.get("key") or {}
        same_series = all(old_key.get(k) == key[k] for k in ("input", "given_pixel_size_A"))
        if keep_file and same_series:  # the same series measured against another ruler: say so before fitting
            name = "element" if old_key.get("element") != key["element"] else "microscope"
            flag = "--element" if name == "element" else "--energy / --semiangle"
            raise ConfigError(
                f"{path.parent} holds results of another run (calibrated with the {name} ({flag}) "
                f"{old_key.get(name)!r}, now {key[name]!r}); start afresh with --no-resume or choose another "
                "output folder")
    measured: dict[str, Any] = {}
    not_measured: dict[str, int] = {}
    used: list[int] = []
    for frame_index in range(min(SERIES_CALIBRATION_FRAMES, len(frames))):
        _, frame = next(frames.iter_from(frame_index))  # an Image, or why the frame is unusable
        if isinstance(frame, ClusterSpyError):
            continue
        if announce is not None:
            announce(f"checking the pixel size against the {element} lattice of frame {frame_index}'s "
                     "clusters (a few seconds a cluster)…")
        cal = calibrate_pixel_size(frame, classify(frame, model=model, contrast=contrast), element=element,
                                   microscope=microscope)
        used.append(frame_index)
        given = cal.given_A
        measured.update({f"frame {frame_index}, cluster {k}": m for k, m in cal.measurements.items()})
        for reason, n in cal.not_measured.items():
            not_measured[reason] = not_measured.get(reason, 0) + n
        if sum(m.scale is not None for m in measured.values()) >= CALIBRATION_CLUSTERS:
            break
    if not used:
        raise ConfigError(f"none of the first {SERIES_CALIBRATION_FRAMES} frames could be read to calibrate "
                          "the pixel size")
    cal = _calibration_of(given, measured, element, not_measured)
    where = f"frame {used[0]}" if len(used) == 1 else f"frames {', '.join(map(str, used))}"
    done = {**cal.to_dict(), "frames": used, "message": f"{where}: {cal.message()}"}
    if path is not None and not keep_file:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps({"key": key, "calibration": done}, indent=2))
    return {**done, "reused": False}


def _detected_diameter_A(diameter_nm: float) -> float:
    """The detector's diameter [Å] of a result's projected ``diameter_nm`` (what the fit takes)."""
    from clusterspy.domain import DETECTED_TO_PROJECTED

    return 10.0 * float(diameter_nm) / DETECTED_TO_PROJECTED


def judged_by_fit(label: str, reason: str | None, fit: Any) -> tuple[str, str | None, bool]:
    """:func:`clusterspy.domain.judge_fit` of a :class:`clusterspy.fit.StructureFit`: the label and
    reason that stand, and whether the fit's lattice lines up only at a bound of its range
    (:func:`clusterspy.fit.api.lattice_at_bound`, which makes it disagree)."""
    from clusterspy.domain import judge_fit
    from clusterspy.fit.api import lattice_at_bound

    at_bound = lattice_at_bound(fit)
    return (*judge_fit(label, reason, fit.isomer, fit.reason, at_bound), at_bound)


def fit_verdict(result: ClusterResult) -> str:
    """What the structure fit says of a verified result's label, in words ('' when not fitted).

    ``"fit agrees: decahedral, NCC 0.93"``, ``"fit disagrees: icosahedral, NCC 0.91 → unknown"``
    or ``"fit inconclusive (ambiguous_fit): the label stands unconfirmed"``.
    """
    fit = result.fit or {}
    if not fit.get("reason") and not fit.get("isomer"):
        return ""
    probs = result.probabilities or {}
    top = max(probs, key=probs.get) if probs else None
    # the fit "disagrees" with the isomer the network gave only when its lattice is at a bound
    # (clusterspy.domain.judge_fit)
    at_bound = result.reason == "fit_disagrees" and (fit["isomer"] == top or fit.get("reason") is not None)
    return _verdict(fit["isomer"], fit.get("ncc"), fit.get("reason"), result.reason, at_bound)


def _verdict(fit_isomer: str, fit_ncc: float | None, fit_reason: str | None, reason: str | None,
             at_bound: bool = False) -> str:
    """The words of :func:`fit_verdict`, from the fit's isomer, NCC and reason and the label's
    reason after :func:`clusterspy.domain.judge_fit` (``at_bound``:
    :func:`clusterspy.fit.api.lattice_at_bound`)."""
    ncc = "" if fit_ncc is None else f", NCC {fit_ncc:.2f}"
    if reason == "fit_disagrees" and at_bound:
        return (f"fit disagrees: its {fit_isomer} lattice lines up only at the end of the ±15 % scale range "
                f"(the pixel size or the element is off, or no lattice is there){ncc} → unknown")
    if reason == "fit_disagrees":
        return f"fit disagrees: {fit_isomer}{ncc} → unknown"
    if fit_reason is None:
        return f"fit agrees: {fit_isomer}{ncc}"
    stands = "the label stands unconfirmed" if reason is None else "no label"
    return f"fit inconclusive ({fit_reason}{ncc}): {stands}"


def fit_figure_name(stem: str, frame: int, n_frames: int, cluster: int) -> str:
    """File name of a verified cluster's fit figure: ``<stem>_c<i>_fit.png``, or
    ``<stem>_frame<NNNN>_c<i>_fit.png`` in a multi-frame file."""
    return f"{stem}_c{cluster}_fit.png" if n_frames == 1 else f"{stem}_frame{frame:04d}_c{cluster}_fit.png"


def write_fit_figures(image: Any, results: Sequence[ClusterResult], fits: dict[int, Any],
                      folder: str | os.PathLike, name: Any) -> list[str]:
    """Save :func:`clusterspy.plots.plot_structure_fit` of every fit with a model, titled with its
    verdict (:func:`fit_verdict`); ``name(cluster)`` gives each PNG's name. Returns the names."""
    from clusterspy.plots import plot_structure_fit, save_figure

    by_cluster = {int(r.cluster): r for r in results}
    written = []
    for k, f in sorted(fits.items()):
        if f.atoms is None or f.simulated is None:
            continue  # no model to draw (poor_fit, too small): the verdict is in the results
        r = by_cluster[k]
        network = f"network: {max(r.probabilities, key=r.probabilities.get)} {r.confidence:.2f}" \
            if r.probabilities else "network: –"
        fig = plot_structure_fit(image, f, note=f"{network} · {fit_verdict(r)}")
        save_figure(fig, Path(folder) / name(k), dpi=100)
        written.append(name(k))
    return written


def write_file_figures(
    path: str | os.PathLike,
    results: Sequence[ClusterResult],
    overlay_dir: str | os.PathLike,
    model: Any,
    pixel_size_A: float | None = None,
    *,
    max_overlays_per_file: int = 50,
    explain: bool = False,
    stem: str | None = None,
    signal: int | str | None = None,
    fits: dict[tuple[int, int], Any] | None = None,
) -> list[str]:
    """Draw the overlay (with ``explain`` also the saliency figure) of each frame with results, and
    the figure of every structure fit (``classify --verify``).

    The frames are read again, one at a time, so that the results can be written before any
    figure is drawn (an out-of-memory kill while drawing loses no result).

    Parameters
    ----------
    path : path-like
        The image file the results came from.
    results : sequence of ClusterResult
        Its results (any frame order).
    overlay_dir : path-like
        Output folder of the PNGs.
    model : clusterspy.predict.Model
        The model that made the results (its crop field is drawn where a diameter is missing).
    pixel_size_A : float, optional
        The pixel size override [Å/px] used for the results.
    max_overlays_per_file : int
        At most this many overlays per multi-frame file (the first frames).
    explain : bool
        Also write ``<name>_saliency.png`` per overlay.
    stem : str, optional
        Start of the PNG names (default: the file's stem).
    signal : int or str, optional
        The signal the results came from, in a multi-signal file (index or title).
    fits : dict, optional
        ``{(frame, cluster): StructureFit}`` (:func:`classify_file` with ``verify``): each fit
        with a model is drawn as :func:`fit_figure_name` (:func:`write_fit_figures`), in every frame.

    Returns
    -------
    list of str
        Names of the PNGs written, in frame order.
    """
    from functools import partial

    from clusterspy.io import read_series

    by_frame: dict[int, list[ClusterResult]] = {}
    for r in results:
        by_frame.setdefault(int(r.frame), []).append(r)
    if not by_frame:
        return []
    frames = read_series(path, pixel_size_A=pixel_size_A, signal=signal)
    base = stem or Path(path).stem
    overlays = set(sorted(by_frame)[:max_overlays_per_file])
    fits = fits or {}
    written = []
    for index in sorted(overlays | {i for i, _ in fits}):
        frame = frames[index]
        name = overlay_name(base, index, len(frames))
        if index in overlays:
            write_overlay(frame, by_frame[index], Path(overlay_dir) / name,
                          box_A=model.crop_px * model.pixel_size_A)
            written.append(name)
        if explain and index in overlays:
            sal = write_saliency(frame, model, Path(overlay_dir) / name.replace(".png", "_saliency.png"),
                                 results=by_frame[index])
            if sal is not None:
                written.append(sal.name)
        own = {k: f for (i, k), f in fits.items() if i == index}
        written += write_fit_figures(frame, by_frame[index], own, overlay_dir,
                                     partial(fit_figure_name, base, index, len(frames)))
        del frame
    return written


def classify_files(
    paths: Sequence[str | os.PathLike],
    pixel_size_A: float | None = None,
    model_path: str | os.PathLike | None = None,
    *,
    progress: bool | None = None,
    overlay_dir: str | os.PathLike | None = None,
    max_overlays_per_file: int = 50,
    explain: bool = False,
    failures: list[dict[str, Any]] | None = None,
    file_info: dict[str, dict[str, Any]] | None = None,
    verify: bool = False,
    element: str = "Au",
    microscope: Any = None,
    **options: Any,
) -> list[ClusterResult]:
    """Classify every cluster in every frame of every file, in this process, in memory.

    For batches that are written as they go, resume, and run on all cores or a Dask cluster,
    see :func:`clusterspy.batch.run_batch` (what ``clusterspy classify`` uses).

    Parameters
    ----------
    paths : sequence of path-like
        Image files; a multi-frame file gives one set of results per frame.
    pixel_size_A : float, optional
        Pixel size [Å/px]; overrides the files' calibration. Needed for files without one.
    model_path : path-like, optional
        ONNX model with its model card beside it; default: the shipped model.
    progress : bool, optional
        Show a progress bar on stderr (default: when there is more than one file).
    overlay_dir : path-like, optional
        Folder for annotated overlay PNGs (see :func:`write_file_figures`).
    max_overlays_per_file : int
        At most this many overlays per multi-frame file (the first frames).
    explain : bool
        With ``overlay_dir``: also save, per overlay, ``<name>_saliency.png``.
    failures : list, optional
        When given, a file or frame that fails with a user-caused error (unreadable, no pixel
        size, outside the model's domain, no cluster) is appended here as ``{"file", "frame",
        "error", "message"}`` and the run goes on; without it the first error is raised.
    file_info : dict, optional
        Filled with each file's ``pixel_size_A`` [Å/px] and its ``pixel_size_source``.
    verify : bool
        Check every label that stands with a structure fit (:func:`verify_clusters`; a conclusive
        fit of another isomer makes it ``"unknown"``, ``fit_disagrees``); with ``overlay_dir``
        also save each fit's figure (:func:`fit_figure_name`).
    element : str
        With ``verify``: the metal of the clusters (Au, Pt, Pd, Ag, Cu, ...).
    microscope : clusterspy.simulation.Microscope, optional
        With ``verify``: beam energy [keV] and convergence semi-angle [mrad] of the data (default
        200 keV, 25 mrad).
    **options
        Keywords of :func:`clusterspy.classify` (``contrast``, ``min_size_nm``,
        ``max_size_nm``, ``border``).

    Returns
    -------
    list of ClusterResult
        In file order, then frame order, then cluster order.

    Raises
    ------
    ClusterSpyError
        Without ``failures``: the first user-caused error (missing or unreadable file, missing
        calibration, image without a cluster, outside the model's domain).
    """
    from clusterspy.predict import load_model

    model = load_model(model_path)
    show = (len(paths) > 1) if progress is None else progress
    results: list[ClusterResult] = []
    with _progress(show) as bar:
        task = bar.add_task("classifying", total=len(paths)) if bar is not None else None
        for p in paths:
            fits: dict[tuple[int, int], Any] = {}
            found, errs, info = classify_file(p, model, pixel_size_A, strict=failures is None, verify=verify,
                                              element=element, microscope=microscope, fits=fits,
                                              **options)
            if failures is not None:
                failures.extend(errs)
            if file_info is not None and info:
                file_info[str(p)] = {k: info[k] for k in ("pixel_size_A", "pixel_size_source",
                                                          "file_pixel_size_A")}
            results.extend(found)
            if overlay_dir is not None:
                write_file_figures(p, found, overlay_dir, model, pixel_size_A,
                                   max_overlays_per_file=max_overlays_per_file, explain=explain, fits=fits)
            if bar is not None:
                bar.advance(task)
    return results


def write_overlay(image: Any, results: Sequence[ClusterResult], path: Path, *, box_A: float) -> Path:
    """Save :func:`clusterspy.plots.plot_overlay` of one frame as a PNG, atomically."""
    from clusterspy.plots import plot_overlay, save_figure

    fig = plot_overlay(image, results, box_A=box_A, title=path.stem.removesuffix("_overlay"))
    save_figure(fig, path, dpi=110)
    return path


def write_saliency(image: Any, model: Any, path: Path, *, results: Sequence[ClusterResult] | None = None
                   ) -> Path | None:
    """Save the crop of every cluster the network judged, with its occlusion-saliency map, as one PNG.

    The crops are made exactly as :func:`clusterspy.classify` makes them (same detection, same
    crop field and rescaling), in the same cluster order; clusters never shown to the network
    (a domain reason) have no saliency. Returns None when no cluster was judged.
    """
    import numpy as np

    from clusterspy.explain import occlusion_saliency
    from clusterspy.plots import plot_saliency, save_figure
    from clusterspy.predict import classify, judged_crop

    if results is None:
        results = classify(image, model=model)
    judged = [r for r in results if r.probabilities]
    if not judged:
        return None
    # each cluster with the model that judged it (the size-routed default has more than one)
    several = len(getattr(model, "models", (model,))) > 1
    crops, maps = [], []
    for r in judged:
        m, crop, _ = judged_crop(image, r, model)
        crops.append(crop)
        maps.append(occlusion_saliency(m, crop))
    probs = np.array([[r.probabilities[c] for c in CLASSES] for r in judged])
    titles = [f"cluster {r.cluster}: {r.label} {r.confidence:.2f}" if r.reason is None else
              f"cluster {r.cluster}: unknown\n({r.reason.replace('_', ' ')}; top "
              f"{max(r.probabilities, key=r.probabilities.get)} {r.confidence:.2f})" for r in judged]
    if several:
        titles = [f"{t}\n{(r.model or '').split('@')[0]}" for t, r in zip(titles, judged, strict=True)]
    fig = plot_saliency(np.stack(crops), np.stack(maps), probs, CLASSES, titles=titles)
    return save_figure(fig, path, dpi=110)


def _progress(enabled: bool):
    """A rich progress bar on stderr, or a no-op context yielding ``None``."""
    from contextlib import nullcontext

    if not enabled:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )


@contextmanager
def frames_progress(enabled: bool) -> Iterator[Any]:
    """A progress bar of a series' frames on stderr (rich; transient): yields the ``progress(done,
    total)`` callback of :func:`clusterspy.series.classify_series`, or None when not ``enabled``
    (``clusterspy series`` shows it when stderr is a terminal). The bar appears at the first frames
    (not during a calibration before them) and goes once the last frame is done, so the lines
    printed before and after it stand on their own."""
    if not enabled:
        yield None
        return
    state: dict[str, Any] = {}

    def update(done: int, total: int | None) -> None:
        if "bar" not in state:
            state["bar"] = _progress(True)
            state["bar"].start()
            state["task"] = state["bar"].add_task("frames", total=total)
        bar = state["bar"]
        bar.update(state["task"], completed=done, total=total)
        if total is not None and done >= total:
            bar.stop()

    try:
        yield update
    finally:
        if "bar" in state:
            state["bar"].stop()


def result_rows(results: Iterable[ClusterResult]) -> list[dict[str, Any]]:
    """Flatten results into rows with the columns of :data:`RESULT_COLUMNS` (and of
    :data:`FIT_COLUMNS` for a verified result)."""
    rows = []
    for r in results:
        d = r.to_dict()
        row = {k: d[k] for k in RESULT_COLUMNS if not k.startswith("p_")}
        probs = d["probabilities"] or {}
        row.update({f"p_{c}": probs.get(c) for c in CLASSES})
        row.update({k: d[k] for k in FIT_COLUMNS if k in d})
        rows.append(row)
    return rows


def format_results(results: Sequence[ClusterResult], fmt: str = "table") -> str:
    """Format results as ``"json"`` (a list of objects), ``"csv"`` or a plain ``"table"``.

    Verified results (``classify --verify``) add the :data:`FIT_COLUMNS` to the CSV and the fit's
    isomer, NCC and reason to the table; other results are formatted as they always were. The
    table's ``conf`` is empty for an ``unknown`` other than ``low_confidence``
    (:func:`clusterspy.predict.table_confidence`); JSON and CSV keep every confidence. The table
    ends with the name of the model that judged each cluster (JSON and CSV: its ``name@sha12``); its
    reason column names, for a label the default's pixel-size search found, the factor it was found
    at (``px×0.87``; JSON and CSV: ``pixel_size_factor``).
    """
    if fmt == "json":
        return json.dumps([r.to_dict() for r in results], indent=2)
    from clusterspy.predict import table_confidence

    rows = result_rows(results)
    verified = any(r.fit is not None for r in results)
    if fmt == "csv":
        return _csv_text(rows, (*RESULT_COLUMNS, *FIT_COLUMNS) if verified else RESULT_COLUMNS)
    # the model that judged each cluster (the default chooses it by size): its name
    by_model = any(row.get("model") for row in rows)
    width = 19 if verified or by_model else 0  # the reason column, padded when columns follow it
    header = (f"{'file':<28} {'frame':>5} {'cl':>3} {'x_px':>7} {'y_px':>7} {'d_nm':>5}  "
              f"{'label':<12} {'conf':>5}  {'reason':<{width}}")
    if verified:
        header += f"  {'fit':<12} {'ncc':>4}  fit_reason"
    elif by_model:
        header += "  model"
    lines = [header, "-" * len(header)]
    for row in rows:
        name = _file_cell(row["file"])
        shown = table_confidence(row["label"], row["reason"], row["confidence"])
        conf = "" if shown is None else f"{shown:.2f}"
        dnm = "" if row["diameter_nm"] is None else f"{row['diameter_nm']:.2f}"
        line = (f"{name:<28} {row['frame']:>5} {row['cluster']:>3} {row['x_px']:>7.1f} {row['y_px']:>7.1f}"
                f" {dnm:>5}  {row['label']:<12} {conf:>5}  {_reason_cell(row):<{width}}")
        if verified:
            line = (line + _fit_cells(row)).rstrip()
        elif by_model:
            line += "  " + str(row.get("model") or "").split("@")[0]
        lines.append(line)
    return "\n".join(lines)


def _reason_cell(row: dict[str, Any]) -> str:
    """The table's reason: why a label is "unknown", or for a label the pixel-size search found,
    where (``px×0.87``: at 0.87 × the pixel size given)."""
    factor = row.get("pixel_size_factor")
    if row["reason"] or factor in (None, 1.0):
        return row["reason"] or ""
    return f"px×{float(factor):.2f}"


def _csv_text(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> str:
    """``rows`` as CSV text with a header of ``columns`` (no final newline): the CSV of
    :func:`format_results` and :func:`format_fits`."""
    buf = _stdio.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().rstrip("\n")


#: Width [characters] of the file column of :func:`format_results` and :func:`format_fits`.
FILE_CELL_CHARS = 28


def _file_cell(file: Any) -> str:
    """A file's name as the tables of :func:`format_results` and :func:`format_fits` show it: whole up
    to :data:`FILE_CELL_CHARS` characters, else its start and its end around "…" (its last 28 alone cut
    "icosahedral_150_p0.25_med5.npz" to "dral_150_p0.25…", which a newcomer misread)."""
    name = Path(str(file)).name
    if len(name) <= FILE_CELL_CHARS:
        return name
    head = (FILE_CELL_CHARS - 1) // 2
    return f"{name[:head]}…{name[len(name) - (FILE_CELL_CHARS - 1 - head):]}"


def _fit_cells(row: dict[str, Any]) -> str:
    """The fit's isomer, NCC and reason, as the table of :func:`format_results` prints them."""
    ncc = "" if row.get("fit_ncc") is None else f"{row['fit_ncc']:.2f}"
    return f"  {row.get('fit_isomer') or '':<12} {ncc:>4}  {row.get('fit_reason') or ''}"


def simulate_to_file(
    *,
    motif: str,
    size: int,
    element: str,
    backend: str,
    energy_keV: float,
    semiangle_mrad: float,
    pixel_size_A: float,
    extent_A: float,
    dose_e_per_A2: float | None,
    seed: int,
    out: str | os.PathLike,
    source_size_A: float = 0.6,
    announce: Callable[[str], None] | None = None,
    source_elongation_A: float = 0.0,
    source_angle_deg: float = 0.0,
    three_fold_A: float = 0.0,
    three_fold_angle_deg: float = 0.0,
) -> Path:
    """Build one cluster, simulate its HAADF-STEM image and save it with its calibration.

    ``announce`` is told, in one line, when the cluster built holds another number of atoms than
    ``size`` (the builders make whole shells: ``--size 1100`` icosahedral is 923 atoms).

    The ``.npz`` output holds ``image``, ``pixel_size_A`` and ``metadata`` (JSON: every
    setting and the seed), and is read back by :func:`clusterspy.io.read_image`.
    ``source_size_A`` is the effective source size (FWHM [Å] of the probe's incoherent blur;
    ``clusterspy simulate --source-size``): 0.6 Å by default, as real microscopes blur (the
    training sets drew 0.2–1.2 Å). With 0 — an ideal probe — sharp fcc clusters show their
    higher-order fringes (0.8–1.0 Å) above the fundamentals, which the ``scale_mismatch`` rule
    reads as a pixel size given too small: of five fcc Au₃₀₉ at 0.2 Å/px and 10⁴ e⁻/Å², one was
    labelled with an ideal probe, four at 0.6 Å (a one-off check, stop 27). ``source_elongation_A``
    draws the source out by that FWHM [Å] more along ``source_angle_deg`` (``--source-elongation``,
    ``--source-angle``): an astigmatic probe to first order (:class:`~clusterspy.simulation.Microscope`).
    ``three_fold_A`` is a three-fold astigmatism C23 [Å] of the probe at azimuth ``three_fold_angle_deg``
    (``--three-fold``, ``--three-fold-angle``; 10⁴ Å = 1 µm).

    A crystalline ``size`` above :data:`clusterspy.structures.builders.MAX_TABLE_ATOMS` is refused:
    the builders' largest forms hold fewer atoms (``--size 45000`` built an icosahedron of 17,885
    atoms and said nothing).
    """
    import numpy as np

    from clusterspy.errors import ConfigError, MissingDependencyError

    try:
        from clusterspy.simulation import Acquisition, Microscope, simulate
        from clusterspy.structures import cluster
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "ase", "train", "simulation") from exc
    out = Path(out)
    if out.suffix.lower() not in {".npz", ".tif", ".tiff"}:
        raise ConfigError(f"--out must end in .npz, .tif or .tiff, got {out.name!r}")
    from clusterspy.isomers import Isomer, parse_isomer
    from clusterspy.structures.builders import MAX_TABLE_ATOMS

    try:
        crystalline = parse_isomer(motif) is not Isomer.AMORPHOUS
    except ValueError:  # cluster() names the motifs
        crystalline = False
    if crystalline and isinstance(size, int) and size > MAX_TABLE_ATOMS:
        raise ConfigError(f"--size {size}: ClusterSpy builds {motif} clusters of up to "
                          f"{MAX_TABLE_ATOMS:,} atoms (≈ 9–10 nm for Au); ask for at most that")
    if np.isfinite(extent_A) and np.isfinite(pixel_size_A) and extent_A > 0 and pixel_size_A > 0 \
            and extent_A / pixel_size_A < 16:
        raise ConfigError(f"--extent {extent_A:g} Å at --pixel-size {pixel_size_A:g} Å/px is "
                          f"{extent_A / pixel_size_A:.3g} px across: give the pixel size in Å/px (atomic "
                          "resolution: 0.1–0.5) or a larger extent")
    rng = np.random.default_rng(seed)
    atoms = cluster(motif, size, element, rng=rng)
    xy = atoms.positions[:, :2]
    across_A = 2.0 * float(np.max(np.linalg.norm(xy - xy.mean(axis=0), axis=1)))  # seen along the beam
    if np.isfinite(extent_A) and across_A > extent_A:
        raise ConfigError(f"the {motif} {element} cluster of {len(atoms):,} atoms is {across_A / 10:.3g} nm "
                          f"across, larger than --extent {extent_A:g} Å: give --extent "
                          f"{np.ceil(across_A * 1.3):g} or more")
    if not (np.isfinite(source_size_A) and source_size_A >= 0):
        raise ConfigError(f"--source-size {source_size_A:g}: give the effective source size in Å (≥ 0)")
    if not (np.isfinite(source_elongation_A) and source_elongation_A >= 0 and np.isfinite(source_angle_deg)):
        raise ConfigError(f"--source-elongation {source_elongation_A:g} --source-angle {source_angle_deg:g}: "
                          "give the extra FWHM in Å (≥ 0) and its direction in degrees")
    if not (np.isfinite(three_fold_A) and three_fold_A >= 0 and np.isfinite(three_fold_angle_deg)):
        raise ConfigError(f"--three-fold {three_fold_A:g} --three-fold-angle {three_fold_angle_deg:g}: give "
                          "the three-fold astigmatism C23 in Å (≥ 0; 1 µm = 10000 Å) and its azimuth in "
                          "degrees")
    microscope = Microscope(energy_keV=energy_keV, semiangle_mrad=semiangle_mrad, source_size_A=source_size_A,
                            source_elongation_A=source_elongation_A, source_angle_deg=source_angle_deg,
                            three_fold_A=three_fold_A, three_fold_angle_deg=three_fold_angle_deg)
    # --dose 0 is refused by Acquisition (it was a noiseless image, as if no --dose were given)
    acquisition = Acquisition(dose_e_per_A2=dose_e_per_A2) if dose_e_per_A2 is not None else None
    image = simulate(
        atoms,
        microscope,
        pixel_size=pixel_size_A,
        extent=extent_A,
        backend=backend,
        rng=rng,
        acquisition=acquisition,
    )
    if announce is not None and three_fold_A > 0:
        # the phase C23 puts at the aperture's edge says whether it matters: a newcomer's 0.5 (µm meant)
        # was simulated as 0.5 Å without a word, and 1e9 Å as a haze (stop 42)
        rad = microscope.three_fold_phase_rad
        if rad < 0.1:
            announce(f"--three-fold {three_fold_A:g} Å puts only {rad:.2g} rad at the aperture's edge, no "
                     f"visible effect — it is in Å: if you meant {three_fold_A:g} µm, give "
                     f"{three_fold_A * 1e4:g}")
        elif rad > 100:
            announce(f"--three-fold {three_fold_A:g} Å puts {rad:.3g} rad at the aperture's edge: the probe "
                     "is spread over nanometres and no atomic column is resolved (a tuned corrector keeps it "
                     "under ~1 rad)")
    if announce is not None and len(atoms) != size:
        announce(f"built {len(atoms)} atoms, not the {size} asked for: the {motif} builder makes whole "
                 "shells (the metadata's n_atoms)")
    metadata = {
        "motif": motif,
        "size": size,
        "n_atoms": len(atoms),
        "element": element,
        "backend": backend,
        "energy_keV": energy_keV,
        "semiangle_mrad": semiangle_mrad,
        "pixel_size_A": pixel_size_A,
        "extent_A": extent_A,
        "dose_e_per_A2": dose_e_per_A2,
        "source_size_A": source_size_A,
        "source_elongation_A": source_elongation_A,
        "source_angle_deg": source_angle_deg,
        "three_fold_A": three_fold_A,
        "three_fold_angle_deg": three_fold_angle_deg,
        "seed": seed,
        "shape": atoms.info.get("shape"),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".npz":
        np.savez_compressed(
            out,
            image=image.data.astype(np.float32),
            pixel_size_A=image.pixel_size_A,
            metadata=json.dumps(metadata),
        )
    else:
        import tifffile

        # ImageJ convention: resolution in pixels per unit, unit Å.
        tifffile.imwrite(
            out,
            image.data.astype(np.float32),
            imagej=True,
            resolution=(1 / image.pixel_size_A, 1 / image.pixel_size_A),
            metadata={"unit": "angstrom", "clusterspy": json.dumps(metadata)},
        )
    return out


def run_demo(out: str | os.PathLike = "clusterspy_demo") -> Path:
    """Classify the built-in example series and write ``results.csv`` and ``report.html``.

    The example (``clusterspy/data/example_series.npz``) is a short series of one Au cluster
    changing isomer, made by ClusterSpy's own simulator (``scripts/make_example_series.py``);
    its true labels are kept beside the predictions in ``results.csv``.

    Returns
    -------
    pathlib.Path
        The HTML report.
    """
    import numpy as np

    out = Path(out)
    with np.load(EXAMPLE_SERIES, allow_pickle=False) as example:
        truth = [str(t) for t in example["true_labels"]]
    result = classify_series(EXAMPLE_SERIES, out=out)
    frames_csv = out / "frames.csv"
    with open(frames_csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    buf = _stdio.StringIO()
    fields = [*(rows[0].keys() if rows else []), "true_label"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "true_label": truth[int(row["frame"])]})
    write_text_atomic(out / "results.csv", buf.getvalue())
    report = getattr(result, "report_path", None) or out / "report.html"
    return Path(report)


def classify_series(
    source: Any,
    pixel_size_A: float | None = None,
    *,
    model: Any = None,
    out: str | os.PathLike | None = None,
    report: bool = True,
    explain: bool = True,
    reporter: Any = None,
    verify_sample: int = 0,
    calibrate: bool = False,
    element: str = "Au",
    microscope: Any = None,
    **options: Any,
) -> SeriesResult:
    """Classify a series (:func:`clusterspy.series.classify_series`), then draw its report.

    What ``clusterspy series`` and :func:`clusterspy.classify_series` run. With ``out``, the
    folder is locked for the whole run (``out/.clusterspy.lock``: a second run on the same
    folder is refused with one line; the lock of a killed run is taken over with a warning).

    Parameters
    ----------
    source, pixel_size_A, model, out, **options
        As for :func:`clusterspy.series.classify_series` (``model`` default: the shipped one).
    report : bool
        With ``out``: write ``strip.png`` (``strip_cluster<i>.png``) and ``report.html``.
    explain : bool
        Overlay occlusion-saliency maps (:func:`clusterspy.explain.occlusion_saliency`) on the
        report's thumbnails: where the network looked to choose the isomer.
    reporter : callable, optional
        ``reporter(result, explain_model_or_None)`` instead of :func:`write_series_report`.
    verify_sample : int
        With ``report``: fit a 3D structure (:func:`clusterspy.fit.fit_cluster`) to at most this
        many frames spread over the run — the first frame of each run of one smoothed label
        (:func:`series_fit_sample`) — and show data | fitted model with the fit's isomer and NCC
        in ``report.html``; their tally (:func:`fit_sample_counts`) joins the summary
        (``result.summary["verify_sample"]``, ``summary.json`` and the text of
        :meth:`SeriesResult.describe`). A report feature only: ``frames.csv``, the labels and
        resume are unchanged. 0: none.
    calibrate : bool
        Check the pixel size against the lattice of the clusters of the first frames
        (:func:`calibrate_series_pixel_size`, ``element`` the ruler) and classify the whole series
        at the pixel size it implies when that is off by more than
        :data:`CALIBRATION_TOLERANCE`; the calibration joins the summary
        (``result.summary["calibration"]``) and ``out/calibration.json``.
    element : str
        With ``verify_sample`` or ``calibrate``: the metal of the cluster (Au, Pt, Pd, Ag, Cu, ...).
    microscope : clusterspy.simulation.Microscope, optional
        With ``verify_sample`` or ``calibrate``: beam energy [keV] and convergence semi-angle
        [mrad] of the data (default 200 keV, 25 mrad).

    Returns
    -------
    SeriesResult
        The result (``result.report_path`` once the report is written).
    """
    from clusterspy import outdir
    from clusterspy.series import classify_series as classify_frames
    from clusterspy.series.classify import check_frame_time

    check_frame_time(options.get("frame_time_s"))  # before the output folder is made
    if (verify_sample and report and out is not None) or calibrate:
        from clusterspy.structures import lattice_constant

        lattice_constant(element)  # an unknown metal: one line, before the series is classified
    lock = None if out is None else outdir.acquire(out, "clusterspy series")
    try:
        store = None
        if verify_sample and report and out is not None:  # fits of other settings: refused or cleared
            store = fit_sample_store(Path(out), element, microscope=microscope,
                                     resume=options.get("resume", True))
        if model is None:
            from clusterspy.predict import load_model

            model = load_model()
        calibration, announce = None, options.get("announce")
        if not calibrate and out is not None and options.get("resume", True):
            _refuse_calibrated_folder(Path(out), pixel_size_A)
        if calibrate:
            calibration = calibrate_series_pixel_size(
                source, pixel_size_A, model=model, element=element, microscope=microscope,
                contrast=options.get("contrast", "auto"), signal=options.get("signal"), out=out,
                resume=options.get("resume", True), announce=announce)
            if announce is not None:
                earlier = "the pixel size calibrated by the earlier run in this folder: "
                announce((earlier if calibration["reused"] else "") + calibration["message"])
            pixel_size_A = calibration["pixel_size_A"]
        summary_before = _file_bytes(Path(out) / "summary.json") if out is not None else None
        result = classify_frames(source, pixel_size_A, model=model, out=out, **options)
        if calibration is not None:  # as an uninterrupted run's: whether it was reused is only said
            result.summary["calibration"] = {k: v for k, v in calibration.items() if k != "reused"}
            if calibration.get("scale") is None and result.no_label_note() is None:  # labels to warn of
                # asked to check the pixel size and could not: the labels stand, but say so where they
                # are read (a newcomer's PtIr at 1.4× its pixel size: fcc 1.00 in all 40 frames, and
                # nothing but the first line of the run said that the scale was unchecked)
                result.summary.setdefault("warnings", []).append(
                    f"--calibrate could not check the pixel size ({pixel_size_A:g} Å/px kept): the labels "
                    "rest on it unchecked, and are not measured beyond ±15 % — see summary.json's "
                    "calibration; --verify-sample K fits K sampled frames")
            if out is not None:
                write_text_atomic(Path(out) / "summary.json", json.dumps(result.summary, indent=2))
        if out is not None and not report:
            _drop_stale_report(Path(out), summary_before, announce)
        if out is not None and report:
            explain_model = model if explain and hasattr(model, "crop_px") else None
            if reporter is not None:
                reporter(result, explain_model)
            else:
                if announce is not None:
                    fits = f"fitting 3D structures to up to {verify_sample} sampled frames, then "
                    announce((fits if verify_sample else "") + "drawing the report (strip plot, thumbnails "
                             "with saliency overlays)…")
                sample = series_fit_sample(result, source, pixel_size_A, k=verify_sample, element=element,
                                           microscope=microscope, signal=options.get("signal"),
                                           store=store) if verify_sample else None
                if sample is not None:
                    result.summary["verify_sample"] = fit_sample_counts(sample, verify_sample)
                    write_text_atomic(Path(out) / "summary.json", json.dumps(result.summary, indent=2))
                write_series_report(result, explain_model, fit_sample=sample)
    finally:
        if lock is not None:
            outdir.release(lock)
    return result


def _file_bytes(path: Path) -> bytes | None:
    """The contents of ``path``, or None when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError:
        return None


def _drop_stale_report(out: Path, summary_before: bytes | None, announce: Any = None) -> list[Path]:
    """Delete the figures and ``report.html`` an earlier run drew in ``out`` when this run (with
    ``--no-report``) wrote another ``summary.json``: they would describe the earlier one (e.g. its
    temperature) beside this one's data files. Returns the files deleted."""
    if summary_before is None or _file_bytes(out / "summary.json") == summary_before:
        return []
    stale = [p for p in [out / "report.html", out / "strip.png", *sorted(out.glob("strip_cluster*.png"))]
             if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    if stale and announce is not None:
        announce(f"deleted {', '.join(p.name for p in stale)} of the earlier run in {out}: they described "
                 "its summary, not this run's (drop --no-report to draw them for this one)")
    return stale


def _refuse_calibrated_folder(out: Path, pixel_size_A: float | None) -> None:
    """Refuse, in one line that names ``--calibrate``, to continue without it a series folder whose
    frames were classified at a calibrated pixel size given the same pixel size: the series' own
    check would only say that the pixel size differs from the one typed."""
    from clusterspy.errors import ConfigError

    path = out / SERIES_CALIBRATION_FILE
    if not (path.is_file() and (out / "frames.csv").is_file()):
        return
    try:
        cal = json.loads(path.read_text())["calibration"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    given = cal.get("given_pixel_size_A")
    if cal.get("corrected") and (pixel_size_A is None or given is None
                                 or abs(float(pixel_size_A) / float(given) - 1) < 1e-6):
        measured = ("" if given is None
                    else f" (measured from {given:g} Å/px against {cal.get('element')}'s lattice)")
        raise ConfigError(f"{out} was classified with --calibrate at {cal['pixel_size_A']:g} Å/px{measured}: "
                          "add --calibrate to continue it, or start afresh with --no-resume")


def write_series_report(result: SeriesResult, explain_model: Any = None,
                        fit_sample: Sequence[dict[str, Any]] | None = None) -> Path:
    """Write the figures (``strip.png``, ``strip_cluster<i>.png``) and ``report.html`` of a series.

    What :func:`classify_series` calls with ``report=True`` and ``out``.

    Parameters
    ----------
    result : SeriesResult
        A result with its output folder ``result.out``.
    explain_model : object, optional
        The model; when given, the thumbnails carry its occlusion-saliency overlay
        (:func:`clusterspy.explain.occlusion_saliency`).
    fit_sample : sequence of dict, optional
        Structure fits of sampled frames (:func:`series_fit_sample`), shown as data | fitted
        model with the fit's isomer and NCC.

    Returns
    -------
    pathlib.Path
        Path of ``report.html``.
    """
    from clusterspy.report import HtmlReport

    out = result.out
    assert out is not None
    rep = HtmlReport("ClusterSpy — series report")
    s = result.summary
    rep.paragraph(
        f"Source: {s['source']} · {s['n_frames']} frames · frame time "
        f"{str(s['frame_time_s']) + ' s' if s['frame_time_s'] else 'unknown'} · model {s['model']['id']} · "
        f"{s['n_clusters']} cluster(s) · seed {s['seed']}")
    if s.get("calibration"):
        rep.paragraph(f"Pixel size checked against the lattice (--calibrate): {s['calibration']['message']}")
    no_label = result.no_label_note()
    if no_label:
        rep.warning(no_label)
    for warn in s["warnings"]:
        rep.warning(warn)
    n_inf, n_sm = s.get("n_inferred"), s.get("n_smoothed_labels")
    if n_inf is not None:
        rep.paragraph(f"{n_inf} of {n_sm} smoothed labels were inferred by the HMM where the "
                      "network gave unknown / another label (open markers in the strip plots; "
                      "column 'inferred' of frames.csv). Frames with a domain reason before "
                      "inference (too small, cut by the edge, not resolved, …) are never "
                      "labelled.")
    if s.get("interval_method_description"):
        rep.paragraph(f"Intervals of the proportions (95%): {s['interval_method_description']}. "
                      "They are for the long-run share of each isomer; a series that never "
                      "changes label cannot pin it down, and its intervals stay wide.")
    for cl in s["clusters"]:
        _series_cluster_section(rep, result, cl, out)
    _series_thumbnails(rep, result, explain_model)
    if fit_sample is not None:
        _series_fit_section(rep, fit_sample)
    rep.details("summary.json", json.dumps(s, indent=2))
    return rep.write(out / "report.html")


def _series_cluster_section(rep: Any, result: SeriesResult, cl: dict, out: Path) -> None:
    """One cluster of the series report: strip plot (also ``strip*.png``), proportions, transitions
    and branching ratios."""
    import numpy as np

    from clusterspy import plots
    from clusterspy.io import write_bytes_atomic
    from clusterspy.report import figure_to_png

    s = result.summary
    cid = cl["cluster"]
    t = result.cluster(cid)
    inferred = t.get("inferred")
    fig = plots.plot_strip(t["frame"], t["label"], t["smoothed_label"], time_s=t["time_s"],
                           frame_time_s=s.get("frame_time_s"),
                           inferred=None if inferred is None else np.nan_to_num(inferred) > 0,
                           title=f"Cluster {cid}")
    name = "strip.png" if cid == s["clusters"][0]["cluster"] else f"strip_cluster{cid}.png"
    png = figure_to_png(fig, dpi=120)  # rendered once: the file and the report share it
    write_bytes_atomic(out / name, png)
    rep.heading(f"Cluster {cid}")
    axis = "time (s; frame numbers on top)" if s.get("frame_time_s") else "frame number"
    inf_text = (f" {cl['n_inferred']} of {cl['n_smoothed_labels']} smoothed labels inferred by "
                f"the HMM ({cl['n_inferred_from_unknown']} where the network gave unknown, "
                f"{cl['n_inferred_from_other_label']} where it gave another label; open "
                "markers)." if "n_inferred" in cl else "")
    rep.png(png, f"Isomer label against {axis}, raw (top) and HMM-smoothed (bottom); "
                 f"{cl['n_lost']} lost, {cl['n_blurred']} blurred, {cl['n_unknown']} unknown "
                 f"frames.{inf_text}")
    for kind in ("raw", "smoothed"):
        st = cl[kind]
        if not st.get("n_labelled"):
            continue  # nothing to plot: the note at the top of the report says why
        pr = st["proportions"]
        fig = plots.plot_proportions({c: pr[c]["value"] for c in CLASSES},
                                     {c: pr[c]["ci95"] for c in CLASSES},
                                     title=f"Cluster {cid}: proportions ({kind} labels)")
        n_eff = st.get("n_eff")
        how = (f"Jeffreys intervals on n_eff = {n_eff:.1f} effective independent frames of "
               f"{st['n_labelled']} labelled" if n_eff is not None and
               st.get("interval_method") == "jeffreys_neff" else st.get("interval_method", ""))
        rep.figure(fig, f"Proportions of {kind} labels with 95% intervals ({how}; "
                        f"{st['n_excluded']} unlabelled frames left out).")
    if not cl["smoothed"].get("n_labelled"):
        return
    rep.table(["from \\ to", *CLASSES],
              [[c, *row] for c, row in zip(CLASSES, cl["smoothed"]["transition_counts"],
                                           strict=True)],
              caption="Transition counts between consecutive frames (smoothed labels).")
    br = cl["smoothed"].get("branching")
    if br:
        rows = [[a, b, v["ratio"], f"[{v['ci95'][0]:.2f}, {v['ci95'][1]:.2f}]",
                 br[a]["n_departures"]]
                for a in CLASSES if a in br for b, v in br[a]["to"].items()]
        if rows:
            rep.table(["from", "to", "branching ratio", "95% CI", "departures"], rows,
                      caption="Where the cluster goes when it leaves an isomer (smoothed labels): "
                              "share of departures to each other isomer, Dirichlet posterior "
                              "with ½ pseudo-departure per destination.")


def _series_thumbnails(rep: Any, result: SeriesResult, explain_model: Any) -> None:
    """The most confident crops per isomer, each with its frame and cluster number."""
    import numpy as np

    if not any(result.thumbnails.get(c) for c in CLASSES):
        return  # no labelled frame: no section
    rep.heading("Most confident frames per isomer")
    if explain_model is not None:
        rep.paragraph("Overlay: occlusion saliency — how much the probability of the label drops "
                      "when a patch of the crop is hidden (bright = decisive region).")
    where = getattr(result, "thumbnail_frames", None) or {}
    for c in CLASSES:
        crops = result.thumbnails.get(c)
        if not crops:
            continue
        frames = where.get(c)
        if explain_model is not None:
            from clusterspy.explain import occlusion_saliency, saliency_overlay

            judged_by = _thumbnail_models(result, explain_model, frames, crops)
            crops = [x if m is None else saliency_overlay(x, occlusion_saliency(
                m, x[None], class_index=np.array([CLASSES.index(c)]))[0])
                for x, m in zip(crops, judged_by, strict=True)]
        known = frames is not None and len(frames) == len(crops) and all(
            f is not None for f, _ in frames)
        labels = [f"frame {f} · cluster {k}" for f, k in frames] if known else None
        rep.images(crops, caption=c, labels=labels)


def _thumbnail_models(result: SeriesResult, model: Any, frames: list | None, crops: list) -> list[Any]:
    """The model that judged each thumbnail crop (its ``frames.csv`` row's ``model``), to explain it
    with: the size-routed default's crops come from several models (96 or 160 px); one whose row
    is not known gets a member with its crop size, else none (no overlay)."""
    from clusterspy.predict import ModelsBySize

    members = model.models if isinstance(model, ModelsBySize) else (model,)
    by_id = {m.card.id: m for m in members}
    rows: dict[tuple[int, int], str] = {}
    table = result.frames
    if frames and table is not None and "model" in table:
        for f, k, mid in zip(table["frame"], table["cluster"], table["model"], strict=True):
            try:
                rows[(int(f), int(k))] = str(mid)
            except (TypeError, ValueError):  # a row without a cluster (a bad frame, no cluster found)
                continue
    out = []
    for i, x in enumerate(crops):
        where = frames[i] if frames and i < len(frames) else (None, None)
        m = by_id.get(rows.get((int(where[0]), int(where[1])))) if None not in where else None
        if m is None or m.crop_px != x.shape[-1]:
            m = next((mm for mm in members if mm.crop_px == x.shape[-1]), None)
        out.append(m)
    return out


#: Folder (in a series' output folder) of the saved structure fits of ``--verify-sample``, and the
#: file in it that says what they were fitted with.
FIT_SAMPLE_DIR = "verify_sample"
FIT_SAMPLE_SETTINGS = "settings.json"


def fit_beam(microscope: Any = None) -> dict[str, float]:
    """The beam energy [keV] and convergence semi-angle [mrad] a structure fit is made with, as the
    settings of ``classify --verify`` and ``series --verify-sample`` record them.

    Parameters
    ----------
    microscope : clusterspy.simulation.Microscope, optional
        The fit's microscope; None: the fit's default (``Microscope()``: 200 keV, 25 mrad).

    Returns
    -------
    dict
        ``{"energy_keV", "semiangle_mrad"}``.
    """
    if microscope is None:
        from clusterspy.simulation import Microscope

        microscope = Microscope()
    return {"energy_keV": float(microscope.energy_keV), "semiangle_mrad": float(microscope.semiangle_mrad)}


def _beam_settings(microscope: Any) -> dict[str, float]:
    """:func:`fit_beam` as ``verify_sample/settings.json`` records it (each key with its option)."""
    beam = fit_beam(microscope)
    return {"energy_keV (--energy)": beam["energy_keV"],
            "semiangle_mrad (--semiangle)": beam["semiangle_mrad"]}


def fit_sample_store(out: Path, element: str, forms: tuple[str, ...] | None = None, *,
                     microscope: Any = None, resume: bool = True) -> Path:
    """The folder of a series' saved structure fits (``out/verify_sample``), ready for this run.

    As the series' own checkpoint does for its settings (:mod:`clusterspy.series.manifest`): fits
    made with another element, beam energy, convergence semi-angle or other forms are refused when
    resuming, and deleted for a fresh start (``resume=False``). Each fit file also records the
    frame, cluster, centre [px] and diameter it was fitted at, and :func:`series_fit_sample` reuses
    it only when they match.

    Parameters
    ----------
    out : pathlib.Path
        The series' output folder (exists).
    element : str
        The metal fitted.
    forms : tuple of str, optional
        The forms tried (None: all).
    microscope : clusterspy.simulation.Microscope, optional
        The microscope of the fits (default 200 keV, 25 mrad; :func:`fit_beam`).
    resume : bool
        Keep the fits of an earlier run with the same settings.

    Returns
    -------
    pathlib.Path
        The folder (made when missing).

    Raises
    ------
    ConfigError
        ``resume`` and the folder holds fits made with another element, microscope or other forms.
    """
    import shutil

    from clusterspy.errors import ConfigError

    folder = out / FIT_SAMPLE_DIR
    settings = {"schema": "clusterspy.series-fits/1", "element (--element)": element,
                **_beam_settings(microscope), "forms": None if forms is None else list(forms)}
    path = folder / FIT_SAMPLE_SETTINGS
    if path.exists() and resume:  # fits saved before the microscope was recorded were made with its default
        old = {**_beam_settings(None), **json.loads(path.read_text(encoding="utf-8"))}
        diff = next((f"{k} was {old.get(k)!r}, now {v!r}" for k, v in settings.items() if old.get(k) != v),
                    None)
        if diff is not None and any(folder.glob("*.npz")):
            raise ConfigError(f"{out} holds structure fits (--verify-sample) of another run ({diff}); start "
                              "afresh with --no-resume (resume=False) or choose another output folder")
    if not resume and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(settings, indent=2) + "\n")
    return folder


def _fit_path(store: Path, key: dict[str, Any]) -> Path:
    """The file of the saved fit of ``key``'s frame and cluster in ``store``."""
    return store / f"frame{key['frame']}_cluster{key['cluster']}.npz"


def _saved_fit(store: Path | None, key: dict[str, Any]) -> Any:
    """The fit saved in ``store`` for ``key`` (frame, cluster, centre, diameter), or None."""
    from clusterspy.fit.result import StructureFit

    if store is None:
        return None
    path = _fit_path(store, key)
    try:
        return StructureFit.from_npz(path) if StructureFit.npz_extra(path) == key else None
    except (OSError, ValueError, KeyError):  # none yet, or unreadable: fitted again
        return None


def series_fit_sample(result: SeriesResult, source: Any, pixel_size_A: float | None = None, *, k: int,
                      element: str = "Au", microscope: Any = None, signal: int | str | None = None,
                      forms: tuple[str, ...] | None = None, store: Path | None = None
                      ) -> list[dict[str, Any]]:
    """Fit a 3D structure to at most ``k`` frames of a series, spread over the run.

    The frames are the first of each run of one smoothed label (per cluster, frames with status
    ``ok``), evenly thinned to ``k``; each is read again from ``source`` and its cluster fitted
    where the series found it (:func:`clusterspy.fit.fit_cluster`), the frame's other clusters
    left out of its window (:func:`_others_in_frame`).

    Parameters
    ----------
    result : SeriesResult
        The classified series.
    source, pixel_size_A, signal
        As given to :func:`classify_series` (the frames are read again; a one-pass iterable
        cannot be, and gives no sample).
    k : int
        Most frames fitted.
    element : str
        The metal of the cluster.
    microscope : clusterspy.simulation.Microscope, optional
        Beam energy [keV] and convergence semi-angle [mrad] of the data (default 200 keV, 25 mrad).
    forms : tuple of str, optional
        The model forms tried (keys of :data:`clusterspy.fit.library.FORMS`); default all.
    store : pathlib.Path, optional
        Folder of saved fits (:func:`fit_sample_store`, made for the same ``element``,
        ``microscope`` and ``forms``): a fit saved there for the same frame, cluster, centre and
        diameter is read back, not redone; each new fit is saved there atomically as soon as it is
        done.

    Returns
    -------
    list of dict
        ``{"frame", "cluster", "label" (smoothed), "image" (Image), "fit" (StructureFit)}`` in
        frame order.
    """
    from clusterspy.fit import fit_cluster
    from clusterspy.io import as_image
    from clusterspy.series.source import open_frames

    picks = _run_starts(result, k)
    frames = open_frames(source, pixel_size_A, signal).frames
    if not picks or not hasattr(frames, "__getitem__"):
        return []
    sample = []
    for row in picks:
        image = as_image(frames[row["frame"]], pixel_size_A)
        key = {c: row[c] for c in ("frame", "cluster", "x_px", "y_px", "diameter_nm")}
        fit = _saved_fit(store, key)
        if fit is None:
            fit = fit_cluster(image, row["x_px"], row["y_px"], _detected_diameter_A(row["diameter_nm"]),
                              element=element, microscope=microscope, forms=forms, cluster=row["cluster"],
                              others=_others_in_frame(result, row["frame"], row["cluster"]))
            if store is not None:
                write_bytes_atomic(_fit_path(store, key), fit.to_npz_bytes(extra=key))
        sample.append({"frame": row["frame"], "cluster": row["cluster"], "label": row["label"],
                       "image": image, "fit": fit})
    return sample


def fit_outcome(label: str, fit: Any) -> str:
    """What a structure fit says of a label: ``"agree"``, ``"disagree"`` or ``"inconclusive"``.

    The rule of :func:`clusterspy.domain.judge_fit`: a conclusive fit (no ``reason``) of the
    label's isomer agrees, a conclusive fit of another isomer disagrees, any other fit (a
    ``reason`` such as ``ambiguous_fit`` or ``poor_fit``) is inconclusive.

    Parameters
    ----------
    label : str
        The label checked (a series' smoothed label).
    fit : StructureFit
        The fit (its ``isomer`` and ``reason`` are read).

    Returns
    -------
    str
        ``"agree"``, ``"disagree"`` or ``"inconclusive"``.
    """
    _, reason, _ = judged_by_fit(label, None, fit)
    if reason == "fit_disagrees":
        return "disagree"
    return "agree" if fit.reason is None else "inconclusive"


def fit_sample_counts(sample: Sequence[dict[str, Any]], asked: int) -> dict[str, int]:
    """The tally of a series' sampled structure fits (:func:`series_fit_sample`).

    Parameters
    ----------
    sample : sequence of dict
        The fitted frames (``"label"``, ``"fit"``).
    asked : int
        The most frames asked for (``verify_sample``, ``--verify-sample K``).

    Returns
    -------
    dict
        ``{"asked", "fitted", "agree", "disagree", "inconclusive"}``: frames asked for, frames
        fitted (fewer when the series has fewer runs of one label), and how many fits agree with
        the smoothed label, disagree with it or are inconclusive (:func:`fit_outcome`).
    """
    counts = {"asked": int(asked), "fitted": len(sample), "agree": 0, "disagree": 0, "inconclusive": 0}
    for s in sample:
        counts[fit_outcome(s["label"], s["fit"])] += 1
    return counts


def _others_in_frame(result: SeriesResult, frame: int, cluster: int) -> list[tuple[float, float, float]]:
    """The other clusters the series found in one frame, ``(x_px, y_px, diameter_A)`` each (the
    detector's diameter [Å]): left out of a sampled cluster's fit, as ``classify --verify`` does."""
    import numpy as np

    t = result.frames
    out = []
    for i in np.flatnonzero(np.asarray(t["frame"]) == frame):
        x, y, d = (float(t[c][i]) for c in ("x_px", "y_px", "diameter_nm"))
        if int(t["cluster"][i]) != cluster and np.isfinite([x, y, d]).all():
            out.append((x, y, _detected_diameter_A(d)))
    return out


def _run_starts(result: SeriesResult, k: int) -> list[dict[str, Any]]:
    """The first frame of each run of one smoothed isomer label (status ``ok``, measured), per
    cluster, thinned evenly to at most ``k``, in frame order."""
    import numpy as np

    t = result.frames
    starts = []
    last: dict[int, str] = {}
    for i in np.argsort(np.asarray(t["frame"]), kind="stable"):
        cid, label = int(t["cluster"][i]), str(t["smoothed_label"][i])
        usable = (label in CLASSES and str(t["status"][i]) == "ok"
                  and np.isfinite([float(t["x_px"][i]), float(t["diameter_nm"][i])]).all())
        if usable and last.get(cid) != label:
            starts.append({"frame": int(t["frame"][i]), "cluster": cid, "label": label,
                           "x_px": float(t["x_px"][i]), "y_px": float(t["y_px"][i]),
                           "diameter_nm": float(t["diameter_nm"][i])})
        if usable:
            last[cid] = label
    if len(starts) > k:
        starts = [starts[j] for j in sorted({round(x) for x in np.linspace(0, len(starts) - 1, max(k, 0))})]
    return starts


def _series_fit_section(rep: Any, sample: Sequence[dict[str, Any]]) -> None:
    """The report's section of sampled structure fits: a table and data | fitted model per frame."""
    from clusterspy.plots import plot_structure_fit

    rep.heading("Structure fit of sampled frames")
    if not sample:
        rep.paragraph("No frame could be fitted (no labelled frame, or the frames cannot be read again).")
        return
    rep.paragraph("The first frame of each run of one smoothed label (at most the number asked for, spread "
                  "over the run) was fitted with the 3D atomic model whose simulation matches it best. A "
                  "report feature only: frames.csv and the labels are unchanged.")
    rows = []
    for s in sample:
        f = s["fit"]
        _, reason, at_bound = judged_by_fit(s["label"], None, f)
        verdict = _verdict(f.isomer, None, f.reason, reason, at_bound)
        rows.append([s["frame"], s["cluster"], s["label"], f.isomer, f.form or "–",
                     "–" if f.ncc is None else f"{f.ncc:.3f}", verdict])
        if f.atoms is not None and f.simulated is not None:
            note = f"frame {s['frame']} · smoothed label {s['label']} · {verdict}"
            rep.figure(plot_structure_fit(s["image"], f, note=note),
                       f"Frame {s['frame']}, cluster {s['cluster']}: data | fitted model simulated | "
                       f"residual | model along and across the beam; fit {f.isomer}, NCC {f.ncc:.3f}.")
    rep.table(["frame", "cluster", "smoothed label", "fit isomer", "fit form", "NCC", "verdict"], rows,
              caption="Structure fits of the sampled frames against the series' smoothed labels.")


def write_thermo_report(result: dict, out: str | os.PathLike) -> Path:
    """Write ``thermo.json``, the figures and a self-contained ``report.html`` to ``out``.

    Behind ``clusterspy thermo TABLE… --out DIR``: the core writes ``thermo.json``
    (:func:`clusterspy.thermo.write_thermo_json`), then :func:`write_thermo_figures` draws.

    Parameters
    ----------
    result : dict
        Output of :func:`clusterspy.thermo.thermo_from_table`.
    out : str or os.PathLike
        Output folder (created).

    Returns
    -------
    pathlib.Path
        Path of ``report.html``.
    """
    from clusterspy.thermo import write_thermo_json

    write_thermo_json(result, out)
    return write_thermo_figures(result, out)


def write_thermo_figures(result: dict, out: str | os.PathLike) -> Path:
    """Write the figures and a self-contained ``report.html`` of a thermo analysis to ``out``.

    The figures half of :func:`write_thermo_report` (which also writes ``thermo.json``).

    Parameters
    ----------
    result : dict
        Output of :func:`clusterspy.thermo.thermo_from_table`.
    out : str or os.PathLike
        Output folder (created).

    Returns
    -------
    pathlib.Path
        Path of ``report.html``.
    """
    from clusterspy import plots
    from clusterspy.report import HtmlReport
    from clusterspy.thermo import thermo_json

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rep = HtmlReport("ClusterSpy — isomer thermodynamics and kinetics")
    rep.paragraph(f"Reference isomer: {result['reference']} · temperatures (K): "
                  f"{', '.join(f'{t:g}' for t in result['temperatures_K'])} · seed "
                  f"{result['settings']['seed']}")
    for w in result["warnings"]:
        rep.warning(w)
    props = result["proportions"]
    present = [c for c in CLASSES if any(p["counts"][c] > 0 for p in props)]
    figs = {}
    figs["proportions_vs_T"] = plots.plot_proportions_vs_temperature(
        [p["temperature_K"] for p in props],
        {c: [p["proportions"][c]["value"] for p in props] for c in present},
        {c: [p["proportions"][c]["ci95"] for p in props] for c in present})
    rep.heading("Proportions")
    rep.figure(figs["proportions_vs_T"], "Isomer proportions against temperature; 95% Jeffreys "
                                          "intervals on the effective number of independent "
                                          "frames (n_eff, from the label changes of each series); "
                                          "unknown frames excluded.")
    rep.table(["T (K)", "frames", "excluded", *present],
              [[p["temperature_K"], p["n_frames"], p["n_excluded"],
                *[p["proportions"][c]["value"] for c in present]] for p in props])
    if result["van_t_hoff"]:
        figs["van_t_hoff"] = plots.plot_van_t_hoff(result["van_t_hoff"])
        rep.heading("Van 't Hoff")
        rep.figure(figs["van_t_hoff"], "ln(p_i/p_ref) against 1/(k_B T) with 95% bootstrap CIs.")
        rep.table(["isomer", "reference", "ΔE (eV)", "95% CI (eV)", "ΔS (k_B)"],
                  [[v["isomer"], v["reference"], v["delta_E_eV"],
                    f"[{v['ci95_eV'][0]:.4f}, {v['ci95_eV'][1]:.4f}]", v["delta_S_kB"]]
                   for v in result["van_t_hoff"]])
    if result["arrhenius"]:
        figs["arrhenius"] = plots.plot_arrhenius(result["arrhenius"])
        rep.heading("Arrhenius")
        rep.figure(figs["arrhenius"], "Transition rates against 1/(k_B T) with 95% CIs.")
        rep.table(["from", "to", "E_a (eV)", "95% CI (eV)", "A (1/s)"],
                  [[a["from"], a["to"], a["barrier_eV"],
                    "–" if a["ci95_eV"][0] is None else
                    f"[{a['ci95_eV'][0]:.4f}, {a['ci95_eV'][1]:.4f}]", a["prefactor_per_s"]]
                   for a in result["arrhenius"]])
    branching = [b for b in result.get("branching", []) if (b["ratio"] or 0) > 0]
    if branching:
        rep.heading("Branching ratios")
        rep.table(["T (K)", "from", "to", "ratio", "95% CI", "departures", "counted from"],
                  [[b["temperature_K"], b["from"], b["to"], b["ratio"],
                    f"[{b['ci95'][0]:.2f}, {b['ci95'][1]:.2f}]", b["n_departures"], b["source"]]
                   for b in branching],
                  caption="Where an isomer goes when it leaves: share of its departures to each "
                          "other isomer (Dirichlet posterior, ½ pseudo-departure per destination); "
                          "a rate is the departure rate times its branching ratio.")
    for name, fig in figs.items():
        plots.save_figure(fig, out_dir / f"{name}.png", dpi=120)
    rep.details("thermo.json", thermo_json(result))
    return rep.write(out_dir / "report.html")


#: Fields of a fit's record (:func:`fit_record`) left out of ``clusterspy fit --format json|csv``:
#: arrays (the model's rotation, the fitted window's bounds [px]), kept in the ``--out`` JSON.
FIT_ARRAY_FIELDS: tuple[str, ...] = ("rotation", "window")


def fit_record(path: str | os.PathLike, pixel_size_A: float, element: str, fit: Any,
               microscope: Any = None) -> dict[str, Any]:
    """One cluster's structure fit as ``clusterspy fit --out`` writes it (``<stem>_c<i>.json``).

    Parameters
    ----------
    path : path-like
        The image file fitted.
    pixel_size_A : float
        Its pixel size [Å/px].
    element : str
        The metal fitted.
    fit : StructureFit
        The fit (:meth:`StructureFit.to_dict`).
    microscope : Microscope, optional
        The microscope the fit assumed (default ``Microscope()``): its beam energy [keV],
        convergence semi-angle and detector angles [mrad] are recorded (the fit depends on them).

    Returns
    -------
    dict
        ``{"file", "pixel_size_A", "element", "energy_keV", "semiangle_mrad", "detector_mrad",
        "clusterspy_version", **fit.to_dict()}``.
    """
    from clusterspy import __version__
    from clusterspy.simulation import Microscope

    m = Microscope() if microscope is None else microscope
    return {"file": str(path), "pixel_size_A": pixel_size_A, "element": element,
            "energy_keV": float(m.energy_keV), "semiangle_mrad": float(m.semiangle_mrad),
            "detector_mrad": [float(v) for v in m.detector_mrad], "clusterspy_version": __version__,
            **fit.to_dict()}


def fit_margin(record: dict[str, Any]) -> float | None:
    """The NCC margin of a fit (:func:`fit_record`) over the best model of every other isomer
    (its ``alternatives``); None without an NCC or without alternatives."""
    others = [v["ncc"] for v in (record.get("alternatives") or {}).values() if v.get("ncc") is not None]
    if record.get("ncc") is None or not others:
        return None
    return round(float(record["ncc"]) - max(others), 4)


def format_fits(records: Sequence[dict[str, Any]], fmt: str = "table") -> str:
    """Format structure fits (:func:`fit_record`) as ``"json"`` (a list of objects), ``"csv"`` or a
    plain ``"table"``: what ``clusterspy fit`` prints.

    JSON and CSV hold every field of the records but the arrays (:data:`FIT_ARRAY_FIELDS`); in the
    CSV, ``alternatives`` is a cell of JSON text. The table has one line per cluster: file,
    cluster, isomer, form, atoms, zone axis, NCC, margin over the best other isomer
    (:func:`fit_margin`), reason and note.
    """
    rows = [{k: v for k, v in r.items() if k not in FIT_ARRAY_FIELDS} for r in records]
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt == "csv":
        cells = [{**r, "alternatives": json.dumps(r.get("alternatives"), separators=(",", ":"))}
                 for r in rows]
        return _csv_text(cells, list(rows[0]) if rows else [])
    header = (f"{'file':<28} {'cl':>3}  {'isomer':<12} {'form':<20} {'n_atoms':>7} {'zone_axis':<9} "
              f"{'ncc':>5} {'margin':>6}  {'reason':<14}  note")
    lines = [header, "-" * len(header)]
    for r in rows:
        ncc, margin = r.get("ncc"), fit_margin(r)
        line = (f"{_file_cell(r['file']):<28} {r['cluster']:>3}  {r['isomer']:<12} {r.get('form') or '':<20} "
                f"{'' if r.get('n_atoms') is None else r['n_atoms']:>7} {r.get('zone_axis') or '':<9} "
                f"{'' if ncc is None else f'{ncc:.3f}':>5} {'' if margin is None else f'{margin:+.3f}':>6}  "
                f"{r.get('reason') or '':<14}  {r.get('note') or ''}")
        lines.append(line.rstrip())
    return "\n".join(lines)


def fit_files(paths: Sequence[str | os.PathLike], *, element: str = "Au", pixel_size_A: float | None = None,
              out: str | os.PathLike | None = None, microscope: Any = None,
              signal: int | str | None = None, contrast: str = "auto",
              records: list[dict[str, Any]] | None = None) -> list[tuple[str, list[Any]]]:
    """Fit a 3D atomic model to every cluster of each image (:func:`clusterspy.fit_structure`).

    With ``out``, writes per cluster ``<stem>_c<i>.xyz`` (extended XYZ), ``<stem>_c<i>.json`` and
    ``<stem>_c<i>.png`` (:func:`clusterspy.plots.plot_structure_fit`); clusters without a fit get
    only their JSON (with the reason). ``signal`` chooses the signal of multi-signal files (index
    or title); ``contrast`` ("auto" refuses bright field, "haadf" trusts the image) as for
    :func:`clusterspy.fit.fit_structure`. ``records``, when given, is filled with every cluster's
    record (:func:`fit_record`, the ``.json`` written with ``out``; for :func:`format_fits`).
    Returns ``[(file, [StructureFit, ...]), ...]``.
    """
    from clusterspy import fit_structure  # detects as classify does: the same clusters, numbered alike
    from clusterspy.io import as_image
    from clusterspy.outdir import check_folder, make_folder
    from clusterspy.plots import plot_structure_fit, save_figure

    if out is not None:
        check_folder(out)  # a file or an unwritable place: one line, before minutes of fitting
    done = []
    for path in paths:
        img = as_image(Path(path), pixel_size_A, signal=signal)
        fits = fit_structure(img, element=element, microscope=microscope, contrast=contrast)
        made = [fit_record(path, img.pixel_size_A, element, f, microscope) for f in fits]
        if records is not None:
            records += made
        if out is not None:
            folder = make_folder(out)
            for f, record in zip(fits, made, strict=True):
                stem = f"{Path(path).stem}_c{f.cluster}"
                write_text_atomic(folder / f"{stem}.json", json.dumps(record, indent=1))
                if f.atoms is not None:
                    f.write_xyz(folder / f"{stem}.xyz")
                    save_figure(plot_structure_fit(img, f), folder / f"{stem}.png")
        done.append((str(path), fits))
    return done
