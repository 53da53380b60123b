"""``python -m scripts.forkkernel install --sys-prefix``: install the forked kernelspec."""

import sys

from .kernelspec import main

sys.exit(main())
