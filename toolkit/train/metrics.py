"""Metric logging of a run: metrics.jsonl (the record), TensorBoard events, a progress bar."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tqdm import tqdm

from toolkit.files import write_atomic


class MetricLogger:
    """Writes one JSON line per logged step; only the main process writes anything."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool, progress: bool, total: int, initial: int):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        self.writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))
            except ImportError:  # tensorboard is optional
                self.writer = None
        self.bar = tqdm(
            total=total, initial=initial, disable=not (enabled and progress), unit="step", dynamic_ncols=True
        )
        self.start = time.time()

    def truncate_after(self, step: int) -> None:
        """Drop lines of steps after `step` (written by a process that died before its next checkpoint)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):  # a line cut short by a killed process
                continue
        write_atomic(self.path, "".join(line + "\n" for line in kept))

    def log(self, metrics: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(metrics, sort_keys=True) + "\n")
        if self.writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.writer.add_scalar(key, value, metrics["step"])
            self.writer.flush()

    def advance(self, loss: float, tokens_per_s: float) -> None:
        if self.enabled:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens_per_s:,.0f}")

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
