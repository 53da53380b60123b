"""Entry point for ``python -m scripts.mlops``."""

import sys

from .cli import main

sys.exit(main())
