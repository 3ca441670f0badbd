"""Analysis by synthesis on one window: a coarse template search, then a local refinement.

Coarse: every model of the library (forms × sizes) is rendered once per beam direction of its
symmetry-reduced grid (:func:`clusterspy.fit.library.beam_directions`), with its centre on the
data's intensity centroid; the in-plane angle and the pixel-size scale are searched by rotating
and zooming the *data* about that centroid (``IN_PLANE_STEP_DEG``, ``COARSE_SCALES``), so each
direction costs one rendering and the NCC of all templates against all rotated, zoomed data is one
matrix product. The templates are rendered without
oversampling (``COARSE_OVERSAMPLE``): on windows whose pixels are coarser than the probe's Nyquist
limit (0.3–0.4 Å/px at 100 keV, 25 mrad) that aliases only the probe's finest frequencies, which
the templates' blur all but removes, at a quarter of the cost; the refinement renders at the
simulator's own oversampling.

Refinement: a pattern search (compass search) over the rotation (three small rotations about
the image axes), the centre (x, y), the scale of the model (pixel-size error), the scan
distortion (aspect and shear) and the blur;
each step renders the ± moves of every parameter as one batch and takes the best, halving the
steps when none improves. The window keeps the fast simulator's images (before the blur) of the
poses it scored: a blur move, or the reverse of the last move, places the atoms as a pose scored
before and costs only its blur. Then the neighbouring sizes and forms of the same motif are tried in
the refined pose and refined in their turn when they match better.

Zone-axis fits (:func:`zone_locked`): the coarse search over the named zone axes only, refined
without tilt (turns about the beam only), for the zone-axis prior of
:func:`clusterspy.fit.api.zone_prior`.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from clusterspy.fit.library import Model, _zone_directions, beam_directions
from clusterspy.fit.render import (
    Pose,
    blur,
    geometry_key,
    intensity_fit,
    intensity_fit_tail,
    ncc_many,
    ncc_with_tail,
    render,
    render_unblurred,
)
from clusterspy.fit.symmetry import axis_rotation
from clusterspy.simulation import Microscope
from clusterspy.structures.orientation import rotation_about_z, rotation_to_z

#: In-plane angle step of the coarse search [deg].
IN_PLANE_STEP_DEG = 5.0
#: Scales (pixel-size corrections, :class:`clusterspy.fit.render.Pose`) of the coarse search: the data
#: are zoomed by each about their centroid, so a calibration error of up to about ±15 % still puts
#: the templates' lattice on the data's (the refinement's scale steps start at 3 %). At scale 1 only,
#: a lattice 13 % off (StatSTEM's Pb particle) lost its columns' phase within a few columns of the
#: centre and the search fitted the outline alone.
COARSE_SCALES = (0.9, 1.0, 1.1)
#: Blur (FWHM [Å]) of the coarse templates.
COARSE_BLUR_A = 0.6
#: Render-grid pixels per window pixel of the coarse templates (None: the fast simulator's own
#: choice, which samples the probe at its Nyquist limit).
COARSE_OVERSAMPLE: int | None = 1
#: First steps of the refinement: rotation [deg], centre [Å], scale, blur [Å], scan distortion
#: (aspect, shear).
STEPS = {"rot": 3.0, "shift": 0.4, "scale": 0.03, "blur": 0.4, "aspect": 0.02, "shear": 0.02}
#: Iterations of the pattern search.
MAX_ITERATIONS = 14
#: Render-grid pixels per window pixel while searching and refining (None: the fast simulator's
#: own choice, which samples the probe at its Nyquist limit; 2 on windows of 0.28–0.5 Å/px).
#: The models that stand are scored again at the simulator's own sampling (:func:`judged`)
#: before their isomers are compared. On PRISM cases of 405–923 atoms, searching at 1 gave the
#: same models and orientations (NCC within 5·10⁻⁴) in 0.6× the time.
SEARCH_OVERSAMPLE: int | None = 1
#: Fast-simulator images (before the blur) a window keeps, the most recently used: the refinement's
#: blur moves and the reverse of its last move place the atoms as a pose scored before.
RENDER_CACHE_IMAGES = 64
#: Scale (pixel-size correction) and blur [Å] bounds.
SCALE_RANGE = (0.85, 1.15)
BLUR_RANGE_A = (0.0, 3.0)
#: Scan-distortion bounds: aspect (a pixel-size ratio ``aspect²`` between the scan directions) and
#: shear. StatSTEM's Pb particle: its {220} fringes along x are 1.18× and its {200} fringes along y
#: 1.08× Pb's (FFT of the image), a ratio of 1.09 (aspect 1.045).
ASPECT_RANGE = (0.92, 1.08)
SHEAR_RANGE = (-0.08, 0.08)


def one_blas_thread() -> contextlib.AbstractContextManager:
    """A context in which BLAS runs on one thread (``threadpoolctl``; without it, nothing changes).

    The fast simulator renders in a pool of Python threads; a multi-threaded BLAS called between
    its renders ran 50–100× slower on 2 busy cores (the NCC products of the coarse search of a
    923-atom cluster: 8.5 s with 2 OpenBLAS threads, 0.07 s with one).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


@dataclass
class Window:
    """The data around one cluster: background-free pixels, grid, mask and microscope."""

    data: np.ndarray
    pixel_size_A: float
    mask: np.ndarray
    centre_px: tuple[float, float]  # (col, row) intensity centroid in the window
    microscope: Microscope
    z: int  # atomic number
    background: float = 0.0  # subtracted from the data [data units]
    #: FWHM [Å] of the model's diffuse tail (:data:`TAIL_FWHM_A`); None: no tail
    tail_fwhm_A: float | None = None
    #: the fast simulator's render-grid pixels per window pixel (None: its own choice); see
    #: :data:`SEARCH_OVERSAMPLE` and :func:`judged`
    oversample: int | None = None
    #: other clusters left out of the mask: :func:`clusterspy.fit.api.left_out_pixels`'s ``spec``
    #: (empty when none reaches the window)
    left_out: tuple = ()
    cache: dict = field(default_factory=dict, repr=False)  # the coarse search's rotated data
    #: fast-simulator images (before the blur) by model and :func:`geometry_key` of the pose
    rendered: OrderedDict = field(default_factory=OrderedDict, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.shape  # type: ignore[return-value]

    def render(self, models: list[np.ndarray], poses: list[Pose]) -> np.ndarray:
        """Images of models (positions [Å]) in their poses (:func:`clusterspy.fit.render.render`).

        The fast simulator's images are kept (up to :data:`RENDER_CACHE_IMAGES`, by model and
        :func:`clusterspy.fit.render.geometry_key`): a pose that places the atoms as one rendered
        before (another blur, a move reversed) costs only its blur.
        """
        keys = [(id(m), geometry_key(p)) for m, p in zip(models, poses, strict=True)]
        todo = list(dict.fromkeys(k for k in keys if k not in self.rendered))
        if todo:
            first = {k: i for i, k in reversed(list(enumerate(keys)))}
            new = render_unblurred([models[first[k]] for k in todo], self.z, [poses[first[k]] for k in todo],
                                   self.microscope, self.pixel_size_A, self.shape, self.oversample)
            for k, img in zip(todo, new, strict=True):
                # the model is kept with its image: its id stays its own while the entry lives
                self.rendered[k] = (models[first[k]], img.copy())
        raw = np.empty((len(keys), *self.shape), dtype=np.float32)
        for i, k in enumerate(keys):
            self.rendered.move_to_end(k)
            raw[i] = self.rendered[k][1]
        while len(self.rendered) > max(RENDER_CACHE_IMAGES, len(keys)):
            self.rendered.popitem(last=False)
        return blur(raw, np.array([p.blur_A for p in poses]), self.pixel_size_A)

    def score(self, models: list[np.ndarray], poses: list[Pose]) -> np.ndarray:
        """NCC of each model in its pose with the data (inside the mask); with a tail
        (``tail_fwhm_A``), the correlation of :func:`clusterspy.fit.render.ncc_with_tail`."""
        images = self.render(models, poses)
        if self.tail_fwhm_A is None:
            return ncc_many(images, self.data, self.mask)
        tails = blur(images, np.full(len(images), self.tail_fwhm_A), self.pixel_size_A)
        return ncc_with_tail(images, tails, self.data, self.mask)

    def simulate(self, model: Model, pose: Pose) -> np.ndarray:
        """The image of one model in its pose."""
        return self.render([model.positions], [pose])[0]

    def fitted(self, model: Model, pose: Pose) -> np.ndarray:
        """The model's image in its pose as fitted to the data: gain, offset (and tail), background
        not added."""
        sim = self.render([model.positions], [pose])
        m = self.mask
        if self.tail_fwhm_A is None:
            gain, offset = intensity_fit(sim[0][m], self.data[m])
            return gain * sim[0] + offset
        tail = blur(sim, np.array([self.tail_fwhm_A]), self.pixel_size_A)[0]
        gain, tail_gain, offset = intensity_fit_tail(sim[0][m], tail[m], self.data[m])
        return gain * sim[0] + tail_gain * tail + offset


@dataclass
class Candidate:
    """A model in a pose and its NCC with the data."""

    model: Model
    pose: Pose
    ncc: float
    zone: bool = False  # the best coarse candidate on a named zone axis (always refined)
    #: the pattern search's steps when it stopped (:func:`refine`; None: not refined)
    steps: dict | None = field(default=None, repr=False)


def _rotated_data(win: Window, angles_rad: np.ndarray, scales: tuple[float, ...] = (1.0,)) -> np.ndarray:
    """``D_{s,k}(p) = data(c + s Rz(φ_k)(p − c))`` for every scale and angle: ``(n_scales · n_angles, rows,
    cols)``, scale-major (a template matching ``D_{s,k}`` is the data's model at scale ``s``)."""
    cx, cy = win.centre_px
    yy, xx = np.mgrid[: win.shape[0], : win.shape[1]]
    dx, dy = xx - cx, yy - cy
    out = np.empty((len(scales) * len(angles_rad), *win.shape), dtype=np.float32)
    for j, sc in enumerate(scales):
        for k, a in enumerate(angles_rad):
            c, s = sc * np.cos(a), sc * np.sin(a)
            sx = cx + c * dx - s * dy
            sy = cy + s * dx + c * dy
            out[j * len(angles_rad) + k] = ndimage.map_coordinates(win.data, [sy, sx], order=1,
                                                                  mode="constant", cval=0.0)
    return out


def _taper(win: Window) -> np.ndarray:
    """A smooth disc (cosine edge over the outer quarter of the mask's radius)."""
    rows, cols = win.shape
    yy, xx = np.mgrid[:rows, :cols]
    r = np.hypot(xx - (cols - 1) / 2, yy - (rows - 1) / 2) / (min(rows, cols) / 2.0 - 1.0)
    return np.where(r < 0.75, 1.0, np.where(r < 1.0, np.cos((r - 0.75) / 0.25 * np.pi / 2) ** 2, 0.0))


def _spectra(images: np.ndarray, taper: np.ndarray, band: np.ndarray) -> np.ndarray:
    """Normalised amplitude spectra (blind to translation) of images ``(n, rows, cols)`` in a band."""
    amp = np.abs(sfft.rfft2(images * taper.astype(images.dtype)))  # float32 data: single precision
    return _normalise(np.sqrt(amp.reshape(len(images), -1)[:, band].astype(np.float64)))


def _band(win: Window) -> np.ndarray:
    """Spatial frequencies 1/15 … 1/1.1 Å⁻¹ (shape and lattice fringes), rfft layout, flattened."""
    ky = np.fft.fftfreq(win.shape[0], d=win.pixel_size_A)
    kx = np.fft.rfftfreq(win.shape[1], d=win.pixel_size_A)
    k = np.hypot(ky[:, None], kx[None, :])
    return ((k >= 1 / 15.0) & (k <= 1 / 1.1)).ravel()


def _normalise(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=1, keepdims=True)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def _rotated_stack(win: Window, scales: tuple[float, ...] | None = None) -> tuple[np.ndarray, ...]:
    """The data rotated by every in-plane angle and zoomed by every scale of the coarse search
    (``scales``, default :data:`COARSE_SCALES`; normalised pixels in the mask and amplitude spectra,
    float32), the angle [rad] and scale of each, its taper and band; computed once per window and
    set of scales."""
    scales = COARSE_SCALES if scales is None else tuple(scales)
    key = ("rotated", scales)
    if key not in win.cache:
        angles = np.radians(np.arange(0.0, 360.0, IN_PLANE_STEP_DEG))
        rotated = _rotated_data(win, angles, scales)
        rot_data = _normalise(rotated.reshape(len(rotated), -1)[:, win.mask.ravel()]).astype(np.float32)
        taper, band = _taper(win), _band(win)
        rot_spec = _spectra(rotated, taper, band).astype(np.float32)
        every_angle = np.tile(angles, len(scales))
        every_scale = np.repeat(np.asarray(scales, dtype=float), len(angles))
        win.cache[key] = (every_angle, every_scale, rot_data, rot_spec, taper, band)
    return win.cache[key]


def coarse_search(win: Window, models: list[Model], keep: int = 3, zone_only: bool = False,
                  scales: tuple[float, ...] | None = None) -> list[Candidate]:
    """The best ``keep`` candidates of every motif (distinct model or direction) over the library,
    and the best on a named zone axis of every crystalline motif (zone-axis images are common, and
    their coarse score suffers most from a few degrees of in-plane error). ``zone_only``: search
    the named zone axes only (crystalline models only). ``scales``: the data's zooms (default
    :data:`COARSE_SCALES`)."""
    angles, scales, rot_data, rot_spec, taper, band = _rotated_stack(win, scales)
    mask = win.mask.ravel()
    cx_A, cy_A = (c * win.pixel_size_A for c in win.centre_px)
    found: list[Candidate] = []
    zone: dict = {}
    for m in models:
        if zone_only and m.group is None:
            continue
        dirs = _zone_directions(m.group) if zone_only else beam_directions(m.group)
        n_zone = 0 if m.group is None else len(_zone_directions(m.group))
        r0 = [rotation_to_z(d) for d in dirs]
        poses = [Pose(r, cx_A, cy_A, 1.0, COARSE_BLUR_A) for r in r0]
        imgs = render([m.positions] * len(poses), win.z, poses, win.microscope, win.pixel_size_A, win.shape,
                      COARSE_OVERSAMPLE)
        t = _normalise(imgs.reshape(len(imgs), -1)[:, mask].astype(np.float64)).astype(np.float32)
        # real-space NCC (shape; needs the centres to agree) + NCC of the amplitude spectra
        # (lattice fringes and their directions, blind to where the lattice's columns sit)
        spec = _spectra(imgs, taper, band).astype(np.float32)
        scores = 0.5 * (t @ rot_data.T + spec @ rot_spec.T)
        best = scores.max(axis=1)
        for i in np.argsort(best)[::-1][:keep]:
            k = int(np.argmax(scores[i]))
            found.append(Candidate(m, poses[i].moved(rotation=rotation_about_z(angles[k]) @ r0[i],
                                                     scale=float(scales[k])), float(scores[i, k])))
        if n_zone:
            i = int(np.argmax(best[:n_zone]))
            k = int(np.argmax(scores[i]))
            turn = rotation_about_z(angles[k]) @ r0[i]
            c = Candidate(m, poses[i].moved(rotation=turn, scale=float(scales[k])), float(scores[i, k]),
                          zone=True)
            if m.isomer not in zone or c.ncc > zone[m.isomer].ncc:
                zone[m.isomer] = c
    by_isomer: dict = {}
    for c in sorted(found, key=lambda c: -c.ncc):
        by_isomer.setdefault(c.model.isomer, [])
        if len(by_isomer[c.model.isomer]) < keep:
            by_isomer[c.model.isomer].append(c)
    chosen = [c for cs in by_isomer.values() for c in cs]
    return chosen + [c for c in zone.values() if not any(
        c.model is o.model and np.allclose(c.pose.rotation, o.pose.rotation) for o in chosen)]


def register(win: Window, model: Model, pose: Pose, max_shift_A: float = 2.5) -> Pose:
    """The pose moved to the peak of the model image's cross-correlation with the data (≤ max_shift_A [Å])."""
    sim = win.simulate(model, pose) * win.mask
    data = (win.data - win.data[win.mask].mean()) * win.mask
    cc = np.fft.irfft2(np.fft.rfft2(data) * np.conj(np.fft.rfft2(sim - sim[win.mask].mean() * win.mask)),
                       s=win.shape)
    rows, cols = win.shape
    dy = (np.arange(rows) + rows // 2) % rows - rows // 2
    dx = (np.arange(cols) + cols // 2) % cols - cols // 2
    near = (np.hypot(dy[:, None], dx[None, :]) * win.pixel_size_A) <= max_shift_A
    i, j = np.unravel_index(np.argmax(np.where(near, cc, -np.inf)), cc.shape)
    return pose.moved(x_A=pose.x_A + dx[j] * win.pixel_size_A, y_A=pose.y_A + dy[i] * win.pixel_size_A)


def _moves(pose: Pose, steps: dict[str, float], tilt: bool = True) -> list[Pose]:
    out = []
    for axis in np.eye(3) if tilt else np.eye(3)[2:]:
        for sign in (1.0, -1.0):
            turn = axis_rotation(axis, sign * np.radians(steps["rot"]))
            out.append(pose.moved(rotation=turn @ pose.rotation))
    for sign in (1.0, -1.0):
        out.append(pose.moved(x_A=pose.x_A + sign * steps["shift"]))
        out.append(pose.moved(y_A=pose.y_A + sign * steps["shift"]))
        out.append(pose.moved(scale=float(np.clip(pose.scale * (1 + sign * steps["scale"]), *SCALE_RANGE))))
        out.append(pose.moved(blur_A=float(np.clip(pose.blur_A + sign * steps["blur"], *BLUR_RANGE_A))))
        aspect = pose.aspect * (1 + sign * steps["aspect"])
        out.append(pose.moved(aspect=float(np.clip(aspect, *ASPECT_RANGE))))
        out.append(pose.moved(shear=float(np.clip(pose.shear + sign * steps["shear"], *SHEAR_RANGE))))
    return out


def refine(win: Window, cand: Candidate, iterations: int = MAX_ITERATIONS, tilt: bool = True) -> Candidate:
    """Pattern search from a candidate (see the module docstring); ``tilt=False`` keeps the beam
    direction in the model frame (turns about the beam only). A candidate refined before
    (``cand.steps``) goes on from where its search stopped."""
    if cand.steps is not None:
        steps, best = dict(cand.steps), cand
    else:
        steps = dict(STEPS)
        # the coarse NCC was taken against interpolated, rotated data: register, score on the window itself
        pose = register(win, cand.model, cand.pose)
        best = Candidate(cand.model, pose, float(win.score([cand.model.positions], [pose])[0]))
    for _ in range(iterations):
        poses = _moves(best.pose, steps, tilt)
        scores = win.score([best.model.positions] * len(poses), poses)
        k = int(np.argmax(scores))
        if scores[k] > best.ncc + 1e-5:
            best = Candidate(best.model, poses[k], float(scores[k]))
        else:
            steps = {key: v / 2.0 for key, v in steps.items()}
    return replace(best, steps=steps)


def try_neighbours(win: Window, best: Candidate, models: list[Model], keep: int = 2, tilt: bool = True
                   ) -> Candidate:
    """Other sizes and shapes of the motif and model frame of ``best`` in its refined pose; refine the best
    (``tilt``: as for :func:`refine`).

    Each model is scored at the refined scale and at the scale that gives it the size of ``best``
    (``s · (n_best / n)^⅓``): sizes come in steps (magic numbers), and the refined scale of the
    winner may have absorbed part of its size error. The ``keep`` best models are refined; the
    best of them replaces ``best`` if it matches better.
    """
    if best.model.group is None:
        return best  # another random structure in this pose means nothing: see resize_glassy
    same = list({m.params: m for m in models if m.isomer is best.model.isomer and m.group == best.model.group
                 and m.params != best.model.params}.values())
    if not same:
        return best
    pose = best.pose
    tries = [(m, p) for m in same for p in {pose.scale, _scale_for(pose.scale, best.model, m)}]
    scores = win.score([m.positions for m, _ in tries], [pose.moved(scale=sc) for _, sc in tries])
    out, seen = best, set()
    for k in np.argsort(scores)[::-1]:
        m, sc = tries[k]
        if id(m) in seen:
            continue
        seen.add(id(m))
        other = refine(win, Candidate(m, pose.moved(scale=sc), float(scores[k])), iterations=8, tilt=tilt)
        if other.ncc > out.ncc:
            out = other
        if len(seen) == keep:
            break
    return out


def _scale_for(scale: float, ref: Model, model: Model) -> float:
    """The scale that gives ``model`` the size of ``ref`` at ``scale`` (same volume per atom), clipped."""
    return float(np.clip(scale * (ref.n_atoms / model.n_atoms) ** (1.0 / 3.0), *SCALE_RANGE))


#: A glassy template of the size its refined scale implies replaces the first one unless it matches
#: worse by more than this NCC (the pixel size given is taken as right unless the data say otherwise).
GLASSY_RESIZE_TOLERANCE = 0.01


def resize_glassy(win: Window, cand: Candidate) -> Candidate:
    """The glassy fit redone with templates of the size that its refined scale implies.

    Glassy templates of the coarse search are far apart in size (a factor of 1.4), and the refined
    scale ``s`` absorbs the difference: the cluster has about ``n · s³`` atoms. Templates of that
    size (:func:`clusterspy.fit.library.glassy_size`) are searched and refined; the best replaces
    ``cand`` unless it matches worse by more than :data:`GLASSY_RESIZE_TOLERANCE`.
    """
    from clusterspy.fit.library import GLASSY_VARIANTS, build_model, glassy_size

    n = glassy_size(cand.model.n_atoms * cand.pose.scale**3)
    if n == cand.model.n_atoms:
        return cand
    models = [build_model("glassy", n, cand.model.element, v) for v in GLASSY_VARIANTS]
    best = max((refine(win, c, iterations=8) for c in coarse_search(win, models, keep=2)),
               key=lambda c: c.ncc)
    return best if best.ncc >= cand.ncc - GLASSY_RESIZE_TOLERANCE else cand


def zone_locked(win: Window, models: list[Model]) -> list[Candidate]:
    """The best fit of each form of ``models`` with the beam on one of their named zone axes, best first.

    A coarse search over the named zone axes only (:func:`coarse_search` with ``zone_only``),
    then the best candidate of each form refined without tilt (in-plane angle, centre, scale
    and blur: the beam stays on the axis). Every form is refined: the coarse scores of the
    forms on an axis are close (StatSTEM's PtIr particle, on [110]: the three best coarse
    candidates were all twinned, refined to NCC 0.883; the truncated octahedron refined to
    0.907). Empty when no model is crystalline.
    """
    forms: dict[str, list[Model]] = {}
    for m in models:
        if m.group is not None:
            forms.setdefault(m.form, []).append(m)
    found = [c for ms in forms.values() for c in coarse_search(win, ms, keep=1, zone_only=True)]
    return sorted((refine(win, c, tilt=False) for c in found), key=lambda c: -c.ncc)


#: Band of :func:`lattice_ncc`: Gaussian sigmas [Å] of the low-pass (noise) and of the smooth image
#: taken away (outline, halo). A 2.5 Å period of projected columns passes at 0.6, an 8 Å one at 0.36.
LATTICE_BAND_A = (0.4, 1.2)


def lattice_ncc(win: Window, cand: Candidate) -> float:
    """NCC of the model's fitted image with the data at the spatial periods of atomic columns.

    The NCC of :meth:`Window.score` is dominated by the particle's outline and thickness profile;
    this one compares the columns only (both images band-passed by :data:`LATTICE_BAND_A`, inside
    the window's mask). A model whose columns do not lie on the data's (a twin seen off its plane,
    a lattice off the zone axis) scores low here whatever its outline.
    """
    lo, hi = (s / win.pixel_size_A for s in LATTICE_BAND_A)

    def band(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(a, lo) - ndimage.gaussian_filter(a, hi)

    m = win.mask
    a, b = band(np.asarray(win.data, float))[m], band(win.fitted(cand.model, cand.pose).astype(float))[m]
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


def judged(win: Window, candidates: dict[str, Candidate]) -> tuple[Window, dict[str, Candidate]]:
    """The window at the fast simulator's own sampling and the candidates scored on it.

    The search renders at :data:`SEARCH_OVERSAMPLE`; the models that stand (the best of each
    isomer) are compared, reported and drawn at the sampling that resolves the probe.
    """
    native = replace(win, oversample=None, rendered=OrderedDict())
    keys = list(candidates)
    scores = native.score([candidates[k].model.positions for k in keys], [candidates[k].pose for k in keys])
    return native, {k: replace(candidates[k], ncc=float(sc)) for k, sc in zip(keys, scores, strict=True)}
