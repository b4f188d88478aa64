"""Wall time per stage of a resumable job, summed over its invocations.

A job that is killed and started again (`xmt reproduce` resumes every stage) would report only its
last invocation's times. The clock keeps a ledger, `OUT/stage_times.json`: one entry per invocation
with the seconds of each stage it ran, rewritten every `every` seconds while a stage runs, so an
invocation that is killed still counts up to its last write.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from toolkit.files import write_atomic


class StageClock:
    def __init__(self, path: str | Path, every: float = 10.0, commit: str | None = None) -> None:
        self.path, self.every = Path(path), every
        self.earlier = self._read()
        self.mine = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": commit, "stages": {}}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def _read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        try:
            return list(json.loads(self.path.read_text())["invocations"])
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{self.path}: not a stage-time ledger ({err}); move it away to start a new one") from err

    def _write(self) -> None:
        with self.lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps({"invocations": [*self.earlier, self.mine]}, indent=1) + "\n")

    def run(self, name: str, fn):
        """fn() timed as stage `name`; returns its result (an exception propagates, its time counted)."""
        start = time.perf_counter()

        def record() -> None:
            self.mine["stages"][name] = round(time.perf_counter() - start, 1)

        def beat() -> None:
            while not self.stop.wait(self.every):
                record()
                self._write()

        self.stop.clear()
        self.thread = threading.Thread(target=beat, daemon=True)
        self.thread.start()
        try:
            return fn()
        finally:
            self.stop.set()
            self.thread.join()
            record()
            self._write()

    def seconds(self) -> dict[str, float]:
        """This invocation's seconds per stage."""
        return dict(self.mine["stages"])

    def all_seconds(self) -> dict[str, float]:
        """Seconds per stage summed over every invocation in the ledger, this one included."""
        total: dict[str, float] = {}
        for inv in [*self.earlier, self.mine]:
            for name, s in inv["stages"].items():
                total[name] = round(total.get(name, 0.0) + s, 1)
        return total

    @property
    def invocations(self) -> int:
        return len(self.earlier) + 1
