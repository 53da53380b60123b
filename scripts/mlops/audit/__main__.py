"""``python -m scripts.mlops.audit MODEL_DIR``: the audit's parallel re-evaluation (see :mod:`.reeval`).

The audit waits for this process to exit, so it exits without tearing the interpreter down
(scikit-learn's modules take a while to free); its only output is already printed and flushed.
"""

import os
import sys

from .reeval import main

code = main()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
