"""Analysis by synthesis on one window: a coarse template search, then a local refinement.

Coarse: every model of the library (forms × sizes) is rendered once per beam direction of its
symmetry-reduced grid (:func:`clusterspy.fit.library.beam_directions`), with its centre on the
data's intensity centroid; the in-plane angle is searched by rotating the *data* about that
centroid (``IN_PLANE_STEP_DEG``), so each direction costs one rendering and the NCC of all
templates against all rotated data is one matrix product.

Refinement: a pattern search (compass search) over the rotation (three small rotations about
the image axes), the centre (x, y), the scale of the model (pixel-size error) and the blur;
each step renders the ± moves of every parameter as one batch and takes the best, halving the
steps when none improves. Then the neighbouring sizes and forms of the same motif are tried in
the refined pose and refined in their turn when they match better.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from clusterspy.fit.library import Model, beam_directions
from clusterspy.fit.render import Pose, ncc_many, render
from clusterspy.fit.symmetry import axis_rotation
from clusterspy.simulation import Microscope
from clusterspy.structures.orientation import rotation_about_z, rotation_to_z

#: In-plane angle step of the coarse search [deg].
IN_PLANE_STEP_DEG = 5.0
#: Blur (FWHM [Å]) of the coarse templates.
COARSE_BLUR_A = 0.6
#: First steps of the refinement: rotation [deg], centre [Å], scale, blur [Å].
STEPS = {"rot": 3.0, "shift": 0.4, "scale": 0.03, "blur": 0.4}
#: Iterations of the pattern search.
MAX_ITERATIONS = 14
#: Scale (pixel-size correction) and blur [Å] bounds.
SCALE_RANGE = (0.85, 1.15)
BLUR_RANGE_A = (0.0, 3.0)


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

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.shape  # type: ignore[return-value]

    def score(self, models: list[np.ndarray], poses: list[Pose]) -> np.ndarray:
        """NCC of each model in its pose with the data (inside the mask)."""
        imgs = render(models, self.z, poses, self.microscope, self.pixel_size_A, self.shape)
        return ncc_many(imgs, self.data, self.mask)

    def simulate(self, model: Model, pose: Pose) -> np.ndarray:
        """The image of one model in its pose."""
        return render([model.positions], self.z, [pose], self.microscope, self.pixel_size_A, self.shape)[0]


@dataclass
class Candidate:
    """A model in a pose and its NCC with the data."""

    model: Model
    pose: Pose
    ncc: float


def _rotated_data(win: Window, angles_rad: np.ndarray) -> np.ndarray:
    """``D_k(p) = data(c + Rz(φ_k)(p − c))`` for every angle: ``(n_angles, pixels inside the mask)``."""
    cx, cy = win.centre_px
    yy, xx = np.nonzero(win.mask)
    dx, dy = xx - cx, yy - cy
    out = np.empty((len(angles_rad), len(xx)))
    for k, a in enumerate(angles_rad):
        c, s = np.cos(a), np.sin(a)
        sx = cx + c * dx - s * dy
        sy = cy + s * dx + c * dy
        out[k] = ndimage.map_coordinates(win.data, [sy, sx], order=1, mode="nearest")
    return out


def _normalise(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=1, keepdims=True)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def coarse_search(win: Window, models: list[Model], keep: int = 3) -> list[Candidate]:
    """The best ``keep`` candidates of every motif (distinct model or direction) over the library."""
    angles = np.radians(np.arange(0.0, 360.0, IN_PLANE_STEP_DEG))
    rot_data = _normalise(_rotated_data(win, angles))
    cx_A, cy_A = (c * win.pixel_size_A for c in win.centre_px)
    found: list[Candidate] = []
    for m in models:
        dirs = beam_directions(m.group)
        r0 = [rotation_to_z(d) for d in dirs]
        poses = [Pose(r, cx_A, cy_A, 1.0, COARSE_BLUR_A) for r in r0]
        imgs = render([m.positions] * len(poses), win.z, poses, win.microscope, win.pixel_size_A, win.shape)
        t = _normalise(imgs.reshape(len(imgs), -1)[:, win.mask.ravel()].astype(np.float64))
        scores = t @ rot_data.T  # (directions, angles)
        for i in np.argsort(scores.max(axis=1))[::-1][:keep]:
            k = int(np.argmax(scores[i]))
            found.append(Candidate(m, poses[i].moved(rotation=rotation_about_z(angles[k]) @ r0[i]),
                                   float(scores[i, k])))
    by_isomer: dict = {}
    for c in sorted(found, key=lambda c: -c.ncc):
        by_isomer.setdefault(c.model.isomer, [])
        if len(by_isomer[c.model.isomer]) < keep:
            by_isomer[c.model.isomer].append(c)
    return [c for cs in by_isomer.values() for c in cs]


def _moves(pose: Pose, steps: dict[str, float]) -> list[Pose]:
    out = []
    for axis in np.eye(3):
        for sign in (1.0, -1.0):
            turn = axis_rotation(axis, sign * np.radians(steps["rot"]))
            out.append(pose.moved(rotation=turn @ pose.rotation))
    for sign in (1.0, -1.0):
        out.append(pose.moved(x_A=pose.x_A + sign * steps["shift"]))
        out.append(pose.moved(y_A=pose.y_A + sign * steps["shift"]))
        out.append(pose.moved(scale=float(np.clip(pose.scale * (1 + sign * steps["scale"]), *SCALE_RANGE))))
        out.append(pose.moved(blur_A=float(np.clip(pose.blur_A + sign * steps["blur"], *BLUR_RANGE_A))))
    return out


def refine(win: Window, cand: Candidate, iterations: int = MAX_ITERATIONS) -> Candidate:
    """Pattern search from a candidate (see the module docstring)."""
    steps = dict(STEPS)
    # the coarse NCC was taken against interpolated, rotated data: score again on the window itself
    best = Candidate(cand.model, cand.pose, float(win.score([cand.model.positions], [cand.pose])[0]))
    for _ in range(iterations):
        poses = _moves(best.pose, steps)
        scores = win.score([best.model.positions] * len(poses), poses)
        k = int(np.argmax(scores))
        if scores[k] > best.ncc + 1e-5:
            best = Candidate(best.model, poses[k], float(scores[k]))
        else:
            steps = {key: v / 2.0 for key, v in steps.items()}
    return best


def try_neighbours(win: Window, best: Candidate, models: list[Model]) -> Candidate:
    """Other sizes and forms of the same motif and point group in the refined pose; refine the best."""
    same = [m for m in models if m.isomer is best.model.isomer and m.group == best.model.group
            and m is not best.model]
    if not same:
        return best
    scores = win.score([m.positions for m in same], [best.pose] * len(same))
    k = int(np.argmax(scores))
    if scores[k] <= best.ncc:
        return best
    other = refine(win, Candidate(same[k], best.pose, float(scores[k])), iterations=8)
    return other if other.ncc > best.ncc else best
