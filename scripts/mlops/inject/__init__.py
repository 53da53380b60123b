"""Regression injection: deliberately degraded candidates that the promotion gate must catch.

A gate is only trustworthy if it has been seen failing. This package builds candidates with
one known defect each and registers them like any other model version:

* :mod:`.rows` -- which rows and labels are corrupted (pure, seeded functions);
* :mod:`.wrappers` -- the pyfunc wrappers (imported on use; they import MLflow) (:class:`SliceCorruption` flips the predicted label
  for a seeded fraction of one segment's rows: the aggregate barely moves while that slice
  drops; latency, threshold and label-renaming defects);
* :mod:`.register` -- logging and registering them (wrappers ship the toolkit's code);
* :mod:`.catalogue` -- :data:`CATALOGUE`, each defect with the gate checks it must fail.

From a shell::

    python -m scripts.mlops inject --base models:/churn-classifier/1 --slice enterprise \\
        --fraction 0.15 --register churn-classifier
    python -m scripts.mlops injections        # the catalogue and the verdicts it expects
"""

from .catalogue import (
    CATALOGUE,
    CATALOGUE_POLICY,
    LAB_FRACTION,
    LAB_SLICE,
    Candidate,
    Injection,
    InjectionContext,
    by_name,
    catalogue_checks,
)
from .register import (
    BASE_ARTIFACT,
    DEFAULT_EXPERIMENT,
    preview_slice_corruption,
    register_label_noise,
    register_slice_corruption,
    register_without_column,
    register_wrapper,
)
from .rows import check_fraction, check_seed, corrupted_rows, flip_labels, noisy_labels

# The wrapper classes (:mod:`.wrappers`) import MLflow, so they are not imported here: the
# command line imports this package to describe the catalogue and must stay fast. Use
# ``from scripts.mlops.inject.wrappers import SliceCorruption``.

__all__ = [
    "BASE_ARTIFACT",
    "CATALOGUE",
    "CATALOGUE_POLICY",
    "DEFAULT_EXPERIMENT",
    "LAB_FRACTION",
    "LAB_SLICE",
    "Candidate",
    "Injection",
    "InjectionContext",
    "by_name",
    "catalogue_checks",
    "check_fraction",
    "check_seed",
    "corrupted_rows",
    "flip_labels",
    "preview_slice_corruption",
    "noisy_labels",
    "register_label_noise",
    "register_slice_corruption",
    "register_without_column",
    "register_wrapper",
]
