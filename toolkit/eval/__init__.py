"""Evaluation: task registry and definitions, prompts (zero/few-shot, ablated demos, CoT), scoring, metrics.

Importing the package registers every task: the world's (toolkit.eval.tasks) and the real
benchmarks' (toolkit.eval.real).
"""

from toolkit.eval import real as _real  # noqa: F401
