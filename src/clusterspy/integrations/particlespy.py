"""ParticleSpy bridge: an isomer label and probabilities on every ParticleSpy particle.

After ``particlespy.api.particle_analysis`` (or ``particle_analysis_series``) has segmented
the particles, :func:`classify_particles` crops each particle from the image, rescales it to
the model's pixel size and sets on every particle the properties

- ``"isomer"`` — the label (one of :data:`clusterspy.isomers.CLASSES` or ``"unknown"``),
- ``"isomer_reason"`` — why it is ``"unknown"`` (:data:`clusterspy.domain.REASONS`; ``""`` when the
  label stands),
- ``"isomer_confidence"`` — the calibrated probability of the most probable class (NaN when the
  particle was never shown to the network: out of the model's domain),
- ``"diameter_nm"`` — its projected diameter, in nm,
- ``"p_icosahedral"``, ``"p_decahedral"``, ``"p_fcc"``, ``"p_amorphous"`` (NaN likewise),
- ``"isomer_ood_distance"`` — the out-of-distribution distance (NaN when not computed),
- ``"isomer_model"`` — the model that judged the particle (``name@sha12``; the shipped default
  chooses it by size),
- ``"isomer_pixel_size_factor"`` — the factor on the pixel size given at which the label was found
  (1.0; 0.87 or 1.15 where the default's pixel-size search found it: the calibration may be off),
- ``"x_px"``, ``"y_px"`` — the centre the crop was cut around, in the image's pixels (col, row;
  ParticleSpy's own ``"x"``/``"y"`` are calibrated and row-first),

so that ParticleSpy's own tools work on them, e.g.
``particlespy.api.time_series_analysis(particles, properties=["isomer", "diameter_nm"])`` (after
``particle_analysis_series``, which sets ``"frame"``), ``particles.plot("diameter_nm")`` (a
histogram labelled in nm), ``particles.plot("isomer")`` (counts per label) or
``particles.plot("isomer_confidence", range=(0, 1))`` (the range leaves out the NaN of particles
never shown to the network, which a histogram cannot place). :func:`results_from_particles`
reads the properties back as :class:`clusterspy.predict.ClusterResults`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from clusterspy.errors import ImageDataError
from clusterspy.image import Image
from clusterspy.isomers import CLASSES
from clusterspy.predict import ClusterResult, ClusterResults

__all__ = ["classify_particles", "results_from_particles"]


def _frame_image(image: Any, frame: int | None, pixel_size_A: float | None) -> Image:
    from clusterspy.io import as_image

    if isinstance(image, Sequence) and not isinstance(image, (str, bytes)):
        return as_image(image[frame or 0], pixel_size_A)
    am = getattr(image, "axes_manager", None)
    if am is not None and am.navigation_dimension > 0:
        return as_image(image.inav[frame or 0], pixel_size_A)
    return as_image(image, pixel_size_A)


def _particle_detection(particle: Any, image: Image) -> Any:
    """The particle as a :class:`clusterspy.detection.Detection` (centre, box, diameter; the
    elongation of its mask, where it has one: two overlapping particles segmented as one are
    ``elongated``)."""
    from clusterspy.detection import Detection, elongation

    mask = np.asarray(getattr(particle, "mask", None)) if hasattr(particle, "mask") else None
    if mask is not None and mask.shape == image.shape and mask.any():
        rows, cols = np.nonzero(mask)
        area = int(rows.size)
        y, x = float(rows.mean()), float(cols.mean())
        bbox = (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1)
        elong = elongation(rows, cols)
    else:  # no full-frame mask: centre of the ParticleSpy bounding box
        bb = getattr(particle, "bbox", None)
        if bb is None:
            raise ImageDataError(
                "a particle has neither a mask nor a bounding box; run "
                "particlespy.api.particle_analysis first"
            )
        r0, c0, r1, c1 = (int(v) for v in bb)
        bbox = (r0, c0, r1, c1)
        y, x = (r0 + r1 - 1) / 2.0, (c0 + c1 - 1) / 2.0
        area = (r1 - r0) * (c1 - c0)
        elong = 1.0
    return Detection(x_px=x, y_px=y, bbox=bbox,
                     diameter_A=2.0 * np.sqrt(area / np.pi) * image.pixel_size_A, area_px=area,
                     elongation=elong)


def classify_particles(
    particle_list: Any,
    image: Any = None,
    *,
    model: Any = None,
    pixel_size_A: float | None = None,
) -> Any:
    """Classify the isomer of every particle of a ParticleSpy ``particle_list``.

    Parameters
    ----------
    particle_list : particlespy.ptcl_class.particle_list
        Particles from ``particle_analysis`` / ``particle_analysis_series``.
    image : hyperspy Signal2D, Image, path, or a sequence of them (one per frame), optional
        The image(s) the particles were segmented in. Each particle is located by its
        full-frame ``mask`` (or ``bbox``); for a series, by its ``"frame"`` property.
        If omitted, each particle's stored image (``store_im=True`` in ParticleSpy's
        parameters) is used instead.
    model : clusterspy.predict.Model or path, optional
        Classifier; default the shipped model (:func:`clusterspy.predict.load_model`).
    pixel_size_A : float, optional
        Pixel size [Å/px] of ``image``, overriding its calibration.

    Returns
    -------
    particle_list
        The same object, with the properties of the module docstring (``"isomer"``,
        ``"isomer_reason"``, ``"isomer_confidence"``, ``"diameter_nm"`` [nm], ``"p_<class>"``, ...)
        set on every particle.

    Raises
    ------
    ClusterSpyError
        No image to crop from, uncalibrated image, no weights, ...
    """
    from clusterspy import predict

    if model is None or not hasattr(model, "card"):
        model = predict.load_model(model)
    particles = list(getattr(particle_list, "list", particle_list))
    if not particles:
        return particle_list
    groups: dict[Any, tuple[Image, list[int], list[Any]]] = {}
    for k, p in enumerate(particles):
        frame = p.properties.get("frame", {}).get("value")
        if image is not None:
            if frame not in groups:
                groups[frame] = (_frame_image(image, frame, pixel_size_A), [], [])
            img, idx, dets = groups[frame]
            idx.append(k)
            dets.append(_particle_detection(p, img))
        else:
            stored = getattr(p, "image", None)
            if stored is None:
                raise ImageDataError(
                    "classify_particles needs the image the particles were found in (image=...) "
                    "or particles stored with ParticleSpy's store_im=True"
                )
            from clusterspy.io import as_image

            img = as_image(stored, pixel_size_A)
            # a stored crop is the particle's box: it touches the crop's edge by construction
            groups[("stored", k)] = (img, [k], [_particle_detection(_CentredStored(img), img)])
    if pixel_size_A is not None and groups:  # said once, not once per particle or frame
        first = next(iter(groups.values()))[0]
        predict.warn_overridden_calibration(first.metadata, first.pixel_size_A,
                                            "the image" if image is not None else "the particles' images")
    reasons = []
    for img, idx, dets in groups.values():
        for k, r in zip(idx, predict.judge(img, dets, model), strict=True):
            _set_properties(particles[k], r)
            reasons.append(r.reason)
    _warn_fragments(reasons)
    return particle_list


#: Least share of ``too_small`` particles that says ParticleSpy's segmentation split the clusters.
FRAGMENTS_MIN_SHARE = 0.5


def _warn_fragments(reasons: list[str | None]) -> None:
    """Warn when most particles are ``too_small``: ParticleSpy's segmentation at atomic resolution
    (its defaults) splits clusters into columns and noise, and the real particles are then
    ``neighbour_in_view`` of the pieces (a newcomer's fields, stop 39: 550–992 pieces, every real
    particle ``neighbour_in_view``, with nothing naming the segmentation)."""
    small = sum(r == "too_small" for r in reasons)
    if len(reasons) >= 4 and small >= FRAGMENTS_MIN_SHARE * len(reasons):
        warnings.warn(
            f"{small} of the {len(reasons)} particles are too small for the models: ParticleSpy's "
            "segmentation has likely split the clusters into pieces (atomic columns, noise), and the other "
            "particles' neighbour_in_view may come from those pieces — segment at a coarser scale (a larger "
            "gaussian or min_size in ParticleSpy's parameters), or let clusterspy.classify find the clusters",
            UserWarning, stacklevel=3)


def _set_properties(p: Any, r: ClusterResult) -> None:
    """Write one result onto a ParticleSpy particle (see the module docstring)."""
    p.set_property("isomer", r.label, None)
    p.set_property("isomer_reason", r.reason or "", None)
    p.set_property("isomer_confidence", np.nan if r.confidence is None else r.confidence, None)
    p.set_property("diameter_nm", r.diameter_nm, "nm")
    for name in CLASSES:
        p.set_property(f"p_{name}", np.nan if not r.probabilities else r.probabilities[name], None)
    p.set_property("isomer_ood_distance", np.nan if r.ood_distance is None else r.ood_distance, None)
    p.set_property("isomer_model", r.model or "", None)
    p.set_property("isomer_pixel_size_factor", float(r.pixel_size_factor), None)
    p.set_property("x_px", float(r.x_px), "px")
    p.set_property("y_px", float(r.y_px), "px")


def results_from_particles(particle_list: Any) -> ClusterResults:
    """The results :func:`classify_particles` wrote on a ParticleSpy ``particle_list``.

    ``cluster`` is the particle's index in the list, ``frame`` its ``"frame"`` property (0 when
    unset); NaN properties come back as ``None``.

    Raises
    ------
    ImageDataError
        A particle carries no isomer (run :func:`classify_particles` first).
    """
    def num(p: Any, key: str) -> float | None:
        v = float(p.properties[key]["value"])
        return None if np.isnan(v) else v

    out = ClusterResults()
    for k, p in enumerate(getattr(particle_list, "list", particle_list)):
        if "isomer" not in p.properties:
            raise ImageDataError(f"particle {k} has no isomer; run classify_particles first")
        probs = {c: num(p, f"p_{c}") for c in CLASSES}
        frame = p.properties.get("frame", {}).get("value")
        out.append(ClusterResult(
            file=None, frame=0 if frame is None else int(frame), cluster=k,
            x_px=float(p.properties["x_px"]["value"]), y_px=float(p.properties["y_px"]["value"]),
            label=str(p.properties["isomer"]["value"]), confidence=num(p, "isomer_confidence"),
            probabilities=None if None in probs.values() else probs,  # type: ignore[arg-type]
            diameter_nm=num(p, "diameter_nm"), reason=str(p.properties["isomer_reason"]["value"]) or None,
            ood_distance=num(p, "isomer_ood_distance"),
            model=str(p.properties.get("isomer_model", {}).get("value") or "") or None,
            pixel_size_factor=float(p.properties.get("isomer_pixel_size_factor", {}).get("value", 1.0))))
    return out


class _CentredStored:
    """Stand-in particle for a stored ParticleSpy crop: the cluster is at the crop's centre."""

    def __init__(self, img: Image) -> None:
        self.bbox = (1, 1, img.shape[0] - 1, img.shape[1] - 1)
