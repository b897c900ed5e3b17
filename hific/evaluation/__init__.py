"""Evaluation: image-quality metrics (and, later, baselines and reports)."""
