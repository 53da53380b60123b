"""Incidents: real failures from the troubleshooting sources, broken on purpose, observed, fixed, verified.

Each entry of :data:`CATALOGUE` breaks a lab workspace or its environment in one known way
(``break_``), shows the real symptom (``observe``: the actual exit status, HTTP status or
exception text of the command that fails), knows the fix and the anti-fix, applies the fix
(``repair``) and checks it (``verify``: fails while broken, and when an anti-fix destroyed
something to hide the symptom). :func:`drill` runs one cycle and always stops what it started::

    lab = Lab.current()                      # the open workspace, with a model behind @production
    record = drill(by_name("port_in_use"), lab)
    print(record.symptom, record.before, record.after)
    tried = attempt(by_name("port_in_use"), lab, my_fix)   # a learner's fix, checked the same way
    print(tried.summary())

``python -m scripts.mlops doctor`` reports the incidents it can see from outside (each entry's
``doctor_check``). From a shell, ``python -m scripts.mlops incidents`` lists the catalogue.
"""

from ..procs import free_port
from .base import (
    COMMAND_TIMEOUT,
    Attempt,
    DrillRecord,
    Fix,
    Incident,
    Lab,
    Symptom,
    Verdict,
    attempt,
    broken,
    drill,
    run,
)
from .catalogue import (
    CATALOGUE,
    LABEL_SYNONYMS,
    RETRAIN_SEED,
    by_name,
    load_normalised,
    normalise_labels,
    wilson_interval,
)

__all__ = [
    "CATALOGUE",
    "COMMAND_TIMEOUT",
    "Attempt",
    "LABEL_SYNONYMS",
    "RETRAIN_SEED",
    "DrillRecord",
    "Fix",
    "Incident",
    "Lab",
    "Symptom",
    "Verdict",
    "attempt",
    "broken",
    "by_name",
    "drill",
    "free_port",
    "load_normalised",
    "normalise_labels",
    "run",
    "wilson_interval",
]
