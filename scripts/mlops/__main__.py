"""Entry point for ``python -m scripts.mlops``."""

import sys

from . import cli

code = cli.main()
if cli.QUICK_EXIT:
    cli.quick_exit(code)
sys.exit(code)
