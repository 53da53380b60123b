"""Promotion review by evidence: audit a release bundle (:mod:`.checks`) and the catalogue of
deceptive bundles that proves the audit catches each deception (:mod:`.catalogue`)."""

from .checks import QUESTIONS, REPAIRS, AuditReport, Finding, audit, open_bundle, to_json

__all__ = ["QUESTIONS", "REPAIRS", "AuditReport", "Finding", "audit", "open_bundle", "to_json"]
