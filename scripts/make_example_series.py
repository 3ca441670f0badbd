"""Make the built-in example series ``src/clusterspy/data/example_series.npz``.

A short HAADF-STEM "video" of one Au cluster (~309 atoms) that changes isomer
(icosahedral → decahedral → fcc → icosahedral) on 30 Å of amorphous carbon, rotating slowly and
drifting, simulated by
ClusterSpy's own fast simulator with Poisson noise. Frames are stored as uint16 counts.

Reproduce (needs the ``train`` extra)::

    .venv/bin/python scripts/make_example_series.py --seed 2026

Keys of the npz: ``frames`` (n, rows, cols) uint16, ``pixel_size_A`` [Å/px], ``frame_time_s`` [s],
``true_labels`` (n,) str, ``metadata`` (JSON string with every setting).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from clusterspy.simulation import Acquisition, Microscope, simulate
from clusterspy.structures import carbon_support, cluster, random_rotation, small_rotation

OUT = Path(__file__).parents[1] / "src" / "clusterspy" / "data" / "example_series.npz"

#: (isomer, number of frames) in the order they appear.
SEGMENTS: tuple[tuple[str, int], ...] = (
    ("icosahedral", 12),
    ("decahedral", 10),
    ("fcc", 10),
    ("icosahedral", 8),
)


def make_series(seed: int, size: int = 309, pixel_size_A: float = 0.3, field_px: int = 160,
                dose_e_per_A2: float = 3e4) -> dict[str, object]:
    """Simulate the example series; returns the arrays to save."""
    rng = np.random.default_rng(seed)
    microscope = Microscope(energy_keV=200, semiangle_mrad=25, detector_mrad=(70, 200),
                            source_size_A=0.6)
    acquisition = Acquisition(dose_e_per_A2=dose_e_per_A2, jitter_px=0.3)
    margin_px = 16
    extent_A = (field_px + 2 * margin_px) * pixel_size_A
    support = carbon_support(extent_A + 4, 30.0, rng=rng)
    frames, labels = [], []
    offset = np.zeros(2)
    for motif, n_frames in SEGMENTS:
        atoms = cluster(motif, size, "Au", rng=rng, orientation="random")
        base = atoms.get_positions()
        rotation = random_rotation(rng)
        for _ in range(n_frames):
            rotation = small_rotation(rng, 4.0) @ rotation
            frame_atoms = atoms.copy()
            frame_atoms.set_positions(base @ rotation.T)
            image = simulate(frame_atoms, microscope, pixel_size=pixel_size_A, extent=extent_A,
                             rng=rng, acquisition=acquisition, support=support)
            offset = np.clip(offset + rng.normal(0, 1.5, 2), -margin_px + 1, margin_px - 1)
            r0, c0 = (margin_px + np.round(offset)).astype(int)
            frames.append(image.data[r0:r0 + field_px, c0:c0 + field_px])
            labels.append(motif)
    stack = np.stack(frames).astype(np.float64)
    scale = 60000.0 / np.percentile(stack, 99.99)
    counts = np.clip(np.round(stack * scale), 0, 65535).astype(np.uint16)
    metadata = {
        "seed": seed, "size": size, "element": "Au", "segments": SEGMENTS,
        "microscope": {"energy_keV": 200, "semiangle_mrad": 25, "detector_mrad": [70, 200],
                       "source_size_A": 0.6},
        "dose_e_per_A2": dose_e_per_A2, "jitter_px": 0.3, "support": "amorphous C, 30 Å", "backend": "fast",
        "made_by": "scripts/make_example_series.py",
    }
    return {
        "frames": counts, "pixel_size_A": np.float64(pixel_size_A), "frame_time_s": np.float64(0.5),
        "true_labels": np.array(labels), "metadata": json.dumps(metadata),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    arrays = make_series(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"{args.out}: {arrays['frames'].shape} frames, {args.out.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
