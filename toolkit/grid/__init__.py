"""Ablation grids: grid files -> cells, executors, result collection, statistics across training seeds."""
