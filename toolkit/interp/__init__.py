"""Interpretability tools for any checkpoint: hook points and activation caches, attention recompute,
probes (scikit-learn) and attribution (captum)."""
