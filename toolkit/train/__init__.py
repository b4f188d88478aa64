"""Training: run configs, the loop, optimizer and schedule, checkpoints, distributed setup."""
