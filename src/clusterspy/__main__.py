"""``python -m clusterspy`` runs the command-line interface."""

import sys

from clusterspy.cli import main

sys.exit(main())
