"""``python -m scripts.mlops.audit MODEL_DIR``: the audit's parallel re-evaluation (see :mod:`.reeval`)."""

from .reeval import main

raise SystemExit(main())
