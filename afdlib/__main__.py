"""``python -m afdlib`` runs the ``afd`` command line."""

import sys

from afdlib.cli import main

sys.exit(main())
