"""Entry point for ``python -m scripts.grading``."""

import sys

from .cli import main

sys.exit(main())
