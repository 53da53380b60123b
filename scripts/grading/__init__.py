"""Authoring, generation and grading of the lab notebooks.

``python -m scripts.grading assign`` regenerates ``labs/`` from ``solutions/``;
``python -m scripts.grading execute NOTEBOOK`` refreshes a reference notebook's outputs.
"""
