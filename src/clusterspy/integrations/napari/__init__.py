"""napari plugin (npe2): open microscope files with their pixel size, classify isomers in a dock widget.

Declared in ``napari.yaml`` (the package's ``napari.manifest`` entry point), so napari finds the
plugin without importing it: :mod:`.reader` opens the formats :mod:`clusterspy.io` reads (layer
scale in nm/px), :mod:`.widget` classifies the active image layer (or every frame of a stack) off
the GUI thread and adds the outlines, tracks, a table and, on request, the saliency. What the
layers contain is built without Qt in :mod:`.layers`. Needs ``pip install 'clusterspy[napari]'``.
"""

from __future__ import annotations
