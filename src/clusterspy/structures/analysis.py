"""Geometric verification of cluster models: coordination numbers and common-neighbour analysis (CNA).

The CNA (Honeycutt & Andersen, J. Phys. Chem. 91, 4950 (1987)) labels each bonded pair (i, j) by a
triple ``(k, l, m)``: ``k`` common neighbours of i and j, ``l`` bonds among those common neighbours,
``m`` bonds in the largest connected cluster of those bonds. Perfect crystals give 421 (fcc), 422 (hcp
stacking: twin planes, stacking faults) and 555 (pairs along a five-fold axis: icosahedra, decahedra).
Everything is vectorised over bonds with NumPy and ``scipy.spatial.cKDTree``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from clusterspy.isomers import Isomer

#: Cut-off between first and second neighbour shells, in units of the median nearest-neighbour distance
#: ((1 + √2)/2: halfway between the first and second fcc shells).
CUTOFF_FACTOR = (1.0 + np.sqrt(2.0)) / 2.0

#: Fraction of interior bonds whose signature is not 421, 422 or 555 above which a cluster is amorphous.
AMORPHOUS_OTHER_FRACTION = 0.15

_FCC, _HCP, _ICO = (4, 2, 1), (4, 2, 2), (5, 5, 5)


def _as_positions(atoms: Any) -> np.ndarray:
    pos = getattr(atoms, "positions", atoms)
    return np.asarray(pos, dtype=float).reshape(-1, 3)


def default_cutoff(positions: np.ndarray) -> float:
    """Neighbour cut-off [Å]: ``CUTOFF_FACTOR`` × the median nearest-neighbour distance."""
    d, _ = cKDTree(positions).query(positions, k=2)
    return float(CUTOFF_FACTOR * np.median(d[:, 1]))


def bonds(atoms: Any, cutoff_A: float | None = None) -> np.ndarray:
    """Bonded pairs ``(i, j)``, ``i < j``, closer than ``cutoff_A`` [Å] (default :func:`default_cutoff`)."""
    pos = _as_positions(atoms)
    cutoff = default_cutoff(pos) if cutoff_A is None else cutoff_A
    return cKDTree(pos).query_pairs(cutoff, output_type="ndarray").reshape(-1, 2)


def coordination_numbers(atoms: Any, cutoff_A: float | None = None) -> np.ndarray:
    """Number of neighbours of every atom within ``cutoff_A`` [Å] (default :func:`default_cutoff`).

    Parameters
    ----------
    atoms : ase.Atoms or array_like, shape (N, 3)
        Atoms or positions [Å].
    cutoff_A : float or None
        Neighbour cut-off [Å].

    Returns
    -------
    ndarray of int, shape (N,)
    """
    pos = _as_positions(atoms)
    pairs = bonds(pos, cutoff_A)
    return np.bincount(pairs.ravel(), minlength=len(pos))


def cna_signatures(atoms: Any, cutoff_A: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Common-neighbour signature of every bonded pair.

    Parameters
    ----------
    atoms : ase.Atoms or array_like, shape (N, 3)
        Atoms or positions [Å].
    cutoff_A : float or None
        Neighbour cut-off [Å] (default :func:`default_cutoff`).

    Returns
    -------
    pairs : ndarray of int, shape (M, 2)
        Bonded pairs ``i < j``.
    signatures : ndarray of int, shape (M, 3)
        ``(k, l, m)`` for each pair: common neighbours, bonds among them, bonds in the longest chain.
    """
    pos = _as_positions(atoms)
    n = len(pos)
    pairs = bonds(pos, cutoff_A)
    if len(pairs) == 0:
        return pairs, np.zeros((0, 3), dtype=int)
    # directed edge keys for O(log E) bond look-ups, and a padded neighbour table
    src = np.concatenate([pairs[:, 0], pairs[:, 1]])
    dst = np.concatenate([pairs[:, 1], pairs[:, 0]])
    order = np.lexsort((dst, src))
    src, dst = src[order], dst[order]
    keys = src.astype(np.int64) * n + dst
    counts = np.bincount(src, minlength=n)
    kmax = int(counts.max())
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    nbr = np.full((n, kmax), -1, dtype=np.int64)
    nbr[src, np.arange(len(src)) - start[src]] = dst

    def bonded(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        q = a.astype(np.int64) * n + b
        idx = np.searchsorted(keys, q)
        idx = np.minimum(idx, len(keys) - 1)
        return (keys[idx] == q) & (a >= 0) & (b >= 0)

    cand = nbr[pairs[:, 0]]  # (M, kmax) neighbours of i
    common = bonded(np.broadcast_to(pairs[:, 1:2], cand.shape), cand)
    k = common.sum(axis=1)
    kc = max(int(k.max()), 1)
    sort = np.argsort(~common, axis=1, kind="stable")[:, :kc]
    cc = np.take_along_axis(cand, sort, axis=1)
    vc = np.take_along_axis(common, sort, axis=1)
    cc = np.where(vc, cc, -1)
    a = np.broadcast_to(cc[:, :, None], (len(pairs), kc, kc))
    b = np.broadcast_to(cc[:, None, :], (len(pairs), kc, kc))
    adj = bonded(a, b) & ~np.eye(kc, dtype=bool)[None]
    deg = adj.sum(axis=2)
    n_bonds = deg.sum(axis=1) // 2
    # connected components of the common-neighbour bond graph by repeated squaring of the reachability matrix
    reach = (adj | (np.eye(kc, dtype=bool)[None] & vc[:, :, None])).astype(np.float32)
    for _ in range(int(np.ceil(np.log2(max(kc, 2)))) + 1):
        reach = (np.matmul(reach, reach) > 0).astype(np.float32)
    label = np.argmax(reach > 0, axis=2)  # smallest index in the component
    onehot = label[:, :, None] == np.arange(kc)[None, None, :]
    comp_bonds = np.einsum("ma,mac->mc", deg, onehot) // 2
    chain = comp_bonds.max(axis=1)
    return pairs, np.stack([k, n_bonds, chain], axis=1).astype(int)


def atom_environments(atoms: Any, cutoff_A: float | None = None) -> np.ndarray:
    """Per-atom local structure from the CNA: ``"fcc"`` (12 × 421), ``"hcp"`` (6 × 421 + 6 × 422),
    ``"ico"`` (12 × 555) or ``"other"``.
    """
    pos = _as_positions(atoms)
    pairs, sig = cna_signatures(pos, cutoff_A)
    n = len(pos)
    counts = {}
    for name, s in (("421", _FCC), ("422", _HCP), ("555", _ICO)):
        hit = np.all(sig == s, axis=1)
        counts[name] = np.bincount(pairs[hit].ravel(), minlength=n)
    cn = np.bincount(pairs.ravel(), minlength=n)
    env = np.full(n, "other", dtype=object)
    env[(cn == 12) & (counts["421"] == 12)] = "fcc"
    env[(cn == 12) & (counts["421"] == 6) & (counts["422"] == 6)] = "hcp"
    env[(cn == 12) & (counts["555"] == 12)] = "ico"
    return env.astype(str)


def _count_axes(directions: np.ndarray, cos_tol: float = 0.94) -> int:
    """Number of distinct lines (sign-agnostic) among unit ``directions`` (greedy clustering)."""
    remaining = directions
    n_axes = 0
    while len(remaining):
        n_axes += 1
        same = np.abs(remaining @ remaining[0]) > cos_tol
        remaining = remaining[~same]
    return n_axes


def structure_summary(atoms: Any, cutoff_A: float | None = None) -> dict[str, Any]:
    """CNA statistics of a cluster, the evidence behind :func:`identify_motif`.

    Returns
    -------
    dict
        ``n_atoms``; ``signatures`` (``{"421": count, ...}`` over all bonds); ``interior_bonds`` (bonds
        whose two atoms both have 12 or more neighbours); ``interior_other_fraction`` (share of those not
        421/422/555);
        ``n555`` and ``n422`` (interior bonds); ``five_fold_axes`` (distinct directions of the 555 bonds);
        ``environments`` (per-atom counts of fcc/hcp/ico/other).
    """
    pos = _as_positions(atoms)
    pairs, sig = cna_signatures(pos, cutoff_A)
    cn = np.bincount(pairs.ravel(), minlength=len(pos))
    codes = sig[:, 0] * 100 + sig[:, 1] * 10 + sig[:, 2]
    uniq, cnt = np.unique(codes, return_counts=True)
    interior = (cn[pairs[:, 0]] >= 12) & (cn[pairs[:, 1]] >= 12)
    if interior.sum() < 6:  # tiny clusters: fall back to the best-coordinated bonds
        interior = (cn[pairs[:, 0]] >= 11) & (cn[pairs[:, 1]] >= 11)
    ic = codes[interior]
    known = (ic == 421) | (ic == 422) | (ic == 555)
    is555 = interior & (codes == 555)
    d = pos[pairs[is555, 1]] - pos[pairs[is555, 0]]
    d = d / np.linalg.norm(d, axis=1)[:, None] if len(d) else d
    env = atom_environments(pos, cutoff_A)
    return {
        "n_atoms": len(pos),
        "signatures": {f"{u:03d}": int(c) for u, c in zip(uniq, cnt, strict=True)},
        "interior_bonds": int(interior.sum()),
        "interior_other_fraction": float(1 - known.mean()) if len(ic) else 1.0,
        "n555": int(is555.sum()),
        "n422": int(np.sum(ic == 422)),
        "five_fold_axes": _count_axes(d),
        "environments": {e: int(np.sum(env == e)) for e in ("fcc", "hcp", "ico", "other")},
    }


def identify_motif(atoms: Any, cutoff_A: float | None = None) -> Isomer:
    """Recognise the motif of a cluster from its coordinates alone (common-neighbour analysis).

    Rules, on bonds between interior atoms (both with ≥ 12 neighbours):

    - more than ``AMORPHOUS_OTHER_FRACTION`` of them are not 421/422/555, or the 555 bonds point along more
      than 8 distinct directions → amorphous;
    - no 555 bond → fcc (421 crystal, with 422 twin planes or stacking faults allowed);
    - 555 bonds along one or two lines → decahedral (a single five-fold axis);
    - along three or more lines (six in a Mackay icosahedron) → icosahedral.

    Parameters
    ----------
    atoms : ase.Atoms or array_like, shape (N, 3)
        Atoms or positions [Å] of one cluster (no support).
    cutoff_A : float or None
        Neighbour cut-off [Å] (default :func:`default_cutoff`).

    Returns
    -------
    Isomer
    """
    s = structure_summary(atoms, cutoff_A)
    if s["interior_other_fraction"] > AMORPHOUS_OTHER_FRACTION or s["five_fold_axes"] > 8:
        return Isomer.AMORPHOUS
    if s["n555"] == 0:
        return Isomer.FCC
    if s["five_fold_axes"] <= 2:
        return Isomer.DECAHEDRAL
    return Isomer.ICOSAHEDRAL
