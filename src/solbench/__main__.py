"""``python -m solbench`` is the ``solbench`` command (useful where the package is on PYTHONPATH
but not installed, e.g. a GPU machine without network access for pip)."""
import sys

from solbench.cli import main

sys.exit(main())
