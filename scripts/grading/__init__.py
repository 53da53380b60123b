"""Authoring, generation and grading of the lab notebooks.

``python -m scripts.grading assign`` regenerates ``labs/`` and the manifests from ``solutions/``;
``python -m scripts.grading record`` records the answer key from the reference solutions' runs;
``python -m scripts.grading grade`` grades submissions, each in its own sandbox, judging
outside the kernel; ``python -m scripts.grading execute NOTEBOOK`` refreshes a reference
notebook's outputs.
"""
