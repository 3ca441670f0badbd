"""The result of a structure fit: :class:`StructureFit`, its JSON and its extended XYZ file."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.image import Image

#: Why a cluster got no fit (or a fit that does not stand).
FIT_REASONS = {
    "cut_by_edge": "the cluster touches the image edge (or its rim does): part of it is not in the data",
    "not_resolved": "its atomic columns are not resolved (as for classify: clusterspy.domain)",
    "scale_mismatch": "its strongest fringes are finer than any metal's: the pixel size is too small",
    "pixel_size_too_large": "its strongest fringes are coarser than any metal's: the pixel size is too large",
    "too_small": "smaller than the smallest model fitted (about 20 atoms)",
    "too_large": "larger than the largest model fitted (about 6,000 atoms)",
    "neighbour_in_view": "other clusters cover more than 40 % of its window: too little of it is left to fit",
    "poor_fit": "no model's simulation matches the data (NCC below the acceptance threshold)",
    "ambiguous_fit": "the best model of another isomer matches almost as well (NCC margin < 0.03), or the "
                     "best model is glassy but the cluster shows lattice fringes: the best model is "
                     "shown, its isomer is not a claim",
}


#: Fields of :class:`StructureFit` that :meth:`StructureFit.to_npz_bytes` saves as arrays (every
#: other field goes into its JSON as it is).
_NPZ_ARRAYS = ("rotation", "atoms", "simulated")


@dataclass
class StructureFit:
    """The 3D atomic model whose fast simulation best matches one cluster.

    Attributes
    ----------
    cluster : int
        Index of the cluster in the detection order.
    x_px, y_px : float
        Centre of the fitted model (column, row) [px] in the input image.
    isomer : str
        ``"icosahedral"``, ``"decahedral"``, ``"fcc"``, ``"amorphous"``, or ``"unknown"`` (then
        ``reason`` says why). ``"amorphous"``: the cluster's atoms are resolved, its spectrum shows
        no lattice fringes, and no crystalline model beats the best glassy one by 0.03 NCC.
    form : str or None
        Form of the model (``mackay_icosahedron``, ``ino_decahedron``, ``marks_decahedron``,
        ``cuboctahedron``, ``truncated_octahedron``, ``octahedron``, ``twinned_fcc``, ``glassy``).
    n_atoms : int or None
        Atoms in the model.
    rotation : ndarray (3, 3) or None
        Model frame (the native frame of :mod:`clusterspy.structures.builders`) → image frame,
        reduced by the motif's point group to the equivalent rotation nearest the identity.
    zone_axis : str or None
        The named axis along the beam (``"5-fold"``, ``"3-fold"``, ``"2-fold"``, ``"[100]"``,
        ``"[110]"``, ``"[111]"``), ``None`` when more than 5° from every one.
    zone_axis_off_deg : float or None
        Angle [deg] between the beam and the nearest named axis; 0 when the zone-axis prior held the
        beam on the axis (:func:`clusterspy.fit.api.zone_prior`: a pose, not a measurement of tilt).
    atoms : ase.Atoms or None
        The model in the image frame [Å]: x = column × pixel size, y = row × pixel size (input
        image, origin at the centre of pixel (0, 0)), z along the beam from the entrance surface;
        the fitted scale and scan distortion applied, so that its projected columns lie on the
        data's (the undistorted model is ``rotation`` applied to the form's own positions).
    simulated : Image or None
        The model's fast simulation (gain and offset fitted) on the window of the data's grid
        given by ``window`` (rows ``window[0]:window[2]``, columns ``window[1]:window[3]``).
    ncc : float or None
        Normalised cross-correlation of ``simulated`` with the data (inside the fitted disc).
    alternatives : dict
        The best fit of every other isomer: ``{isomer: {"form", "n_atoms", "ncc"}}``.
    scale : float or None
        Fitted scale of the model: the data's pixel size is best explained as ``pixel_size / scale``.
    blur_A : float or None
        Fitted extra Gaussian blur, FWHM [Å].
    aspect, shear : float or None
        Fitted linear scan distortion of the image: x stretched by ``aspect`` and y by
        ``1/aspect`` (fast/slow-scan pixel-size ratio ``aspect²``), then x moved by ``shear · y``
        (:class:`clusterspy.fit.render.Pose`).
    reason : str or None
        Why the isomer is ``"unknown"`` (a key of :data:`FIT_REASONS`), else ``None``. With
        ``"ambiguous_fit"`` the other fields still describe the best model, for inspection only.
    note : str or None
        A warning that does not change the isomer: the best crystalline model fitted only at a
        scale or blur far from the expected (:func:`clusterspy.fit.api.scale_note`) — the pixel
        size or the element may be wrong. None when there is nothing to say.
    seconds : float
        Time spent on this cluster [s].
    """

    cluster: int
    x_px: float
    y_px: float
    isomer: str
    form: str | None = None
    n_atoms: int | None = None
    rotation: np.ndarray | None = None
    zone_axis: str | None = None
    zone_axis_off_deg: float | None = None
    atoms: Any = None
    simulated: Image | None = None
    ncc: float | None = None
    alternatives: dict[str, dict[str, Any]] = field(default_factory=dict)
    scale: float | None = None
    blur_A: float | None = None
    aspect: float | None = None
    shear: float | None = None
    window: tuple[int, int, int, int] | None = None
    reason: str | None = None
    note: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no arrays but the rotation)."""
        return {
            "cluster": self.cluster, "x_px": round(float(self.x_px), 3), "y_px": round(float(self.y_px), 3),
            "isomer": self.isomer, "form": self.form, "n_atoms": self.n_atoms,
            "rotation": None if self.rotation is None else np.round(self.rotation, 6).tolist(),
            "zone_axis": self.zone_axis,
            "zone_axis_off_deg": None if self.zone_axis_off_deg is None else round(self.zone_axis_off_deg, 2),
            "ncc": None if self.ncc is None else round(float(self.ncc), 4),
            "alternatives": self.alternatives,
            "scale": None if self.scale is None else round(float(self.scale), 4),
            "blur_A": None if self.blur_A is None else round(float(self.blur_A), 3),
            "aspect": None if self.aspect is None else round(float(self.aspect), 4),
            "shear": None if self.shear is None else round(float(self.shear), 4),
            "window": None if self.window is None else list(self.window),
            "reason": self.reason, "note": self.note, "seconds": round(float(self.seconds), 2),
        }

    def to_npz_bytes(self, extra: dict[str, Any] | None = None) -> bytes:
        """The whole fit (model, simulation and every field) as the bytes of an ``.npz`` file.

        Written atomically by the caller (:func:`clusterspy.io.write_bytes_atomic`) and read back
        by :meth:`from_npz`, so a saved fit (``series --verify-sample``) need not be redone.
        ``extra`` (JSON values: what the fit was made from) is read back by :meth:`npz_extra`.
        """
        import io
        import json

        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.name not in _NPZ_ARRAYS}
        fields["window"] = None if self.window is None else [int(v) for v in self.window]
        arrays: dict[str, np.ndarray] = {}
        if self.rotation is not None:
            arrays["rotation"] = np.asarray(self.rotation, float)
        if self.atoms is not None:
            arrays["numbers"] = np.asarray(self.atoms.numbers)
            arrays["positions_A"] = np.asarray(self.atoms.positions, float)
        if self.simulated is not None:
            arrays["simulated"] = np.asarray(self.simulated.data, np.float32)
            fields["simulated_pixel_size_A"] = float(self.simulated.pixel_size_A)
            fields["simulated_metadata"] = self.simulated.metadata
        buf = io.BytesIO()
        np.savez(buf, fields_json=np.array(json.dumps(fields, default=float)),
                 extra_json=np.array(json.dumps(extra or {})), **arrays)
        return buf.getvalue()

    @staticmethod
    def npz_extra(path: str | Path) -> dict[str, Any]:
        """The ``extra`` saved with a fit by :meth:`to_npz_bytes` (``{}`` when none)."""
        import json

        with np.load(path, allow_pickle=False) as z:
            return json.loads(str(z["extra_json"])) if "extra_json" in z.files else {}

    @classmethod
    def from_npz(cls, path: str | Path) -> StructureFit:
        """A fit saved with :meth:`to_npz_bytes`."""
        import json

        with np.load(path, allow_pickle=False) as z:
            fields = json.loads(str(z["fields_json"]))
            arrays = {k: np.asarray(z[k]) for k in z.files if not k.endswith("_json")}
        px = fields.pop("simulated_pixel_size_A", None)
        meta = fields.pop("simulated_metadata", None)
        fit = cls(**{**fields, "window": None if fields["window"] is None else tuple(fields["window"])})
        fit.rotation = arrays.get("rotation")
        if "positions_A" in arrays:
            from ase import Atoms

            fit.atoms = Atoms(numbers=arrays["numbers"], positions=arrays["positions_A"])
        if "simulated" in arrays:
            fit.simulated = Image(arrays["simulated"], px, meta or {})
        return fit

    def write_xyz(self, path: str | Path) -> Path:
        """Write the model as extended XYZ (ASE-readable; the fit's summary in the comment line).

        The positions are :attr:`atoms`' (the image frame, the fitted ``scale`` and scan distortion
        applied: a lattice the pixel size got wrong is as wrong here); the comment line carries
        ``scale``, ``aspect`` and ``shear`` so that the undistorted model can be recovered."""
        from ase.io import write

        if self.atoms is None:
            raise ValueError(f"cluster {self.cluster} has no fitted model ({self.reason})")
        atoms = self.atoms.copy()
        atoms.info.clear()
        for k in ("isomer", "form", "n_atoms", "zone_axis", "ncc"):
            v = getattr(self, k)
            if v is not None:
                atoms.info[k] = v
        atoms.info["rotation"] = np.asarray(self.rotation).ravel()
        # the positions are in the image frame: the fitted scale and scan distortion applied (a lattice
        # the pixel size got wrong by 13 % is 13 % off here too): say so beside them
        for k in ("scale", "aspect", "shear"):
            v = getattr(self, k)
            if v is not None:
                atoms.info[k] = round(float(v), 4)
        atoms.info["frame"] = "image frame (column, row times the pixel size, in A), fitted scale applied"
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        write(str(tmp), atoms, format="extxyz")
        tmp.replace(path)
        return path
