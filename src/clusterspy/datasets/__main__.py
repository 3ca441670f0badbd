"""``python -m clusterspy.datasets SPEC OUT [--scheduler ADDRESS] [--workers N] [--no-progress]``."""

from __future__ import annotations

import argparse

from clusterspy.datasets.store import generate


def main(argv: list[str] | None = None) -> None:
    """Generate (or resume) a labelled dataset from a specification file."""
    ap = argparse.ArgumentParser(prog="python -m clusterspy.datasets", description=main.__doc__)
    ap.add_argument("spec", help="YAML/JSON specification (or a training config with 'dataset:')")
    ap.add_argument("out", help="output folder (.zarr); rerun the same command to resume")
    ap.add_argument("--scheduler", default=None,
                    help="'processes' (default), 'threads', 'synchronous' or tcp://host:port")
    ap.add_argument("--workers", type=int, default=None, help="local worker processes")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    path = generate(a.spec, a.out, scheduler=a.scheduler, num_workers=a.workers,
                    progress=not a.no_progress)
    print(f"dataset complete: {path}")


if __name__ == "__main__":
    main()
