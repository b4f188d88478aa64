"""Evaluation: task registry and definitions, prompts (zero/few-shot, ablated demos, CoT), scoring, metrics."""
