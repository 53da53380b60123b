"""Project packages: ``scripts.mlops`` (the lab toolkit) and ``scripts.grading`` (authoring and grading)."""
