"""The batch report: batch_report.json and .csv, one row per item, rewritten as items finish."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from img2vid.execution.items import DONE, FAILED, PENDING, SKIPPED, BatchItem, ItemResult
from img2vid.media import outputs

REPORT_STEM = "batch_report"
REPORT_COLUMNS = ("item", "input", "status", "output", "seconds", "error")
REPORT_INTERVAL_S = 1.0  # rewrite the report at most this often (and at the end)


class Report:
    """batch_report.json and .csv, rewritten atomically as items finish.

    A crash leaves the last written report (at most REPORT_INTERVAL_S old); the outputs
    themselves are the source of truth for resuming.
    """

    def __init__(self, directory: Path, source: str, runner: str, items: Sequence[BatchItem],
                 interval_s: float = REPORT_INTERVAL_S) -> None:
        self.json_path = directory / f"{REPORT_STEM}.json"
        self.csv_path = directory / f"{REPORT_STEM}.csv"
        self.source, self.runner, self.interval_s = source, runner, interval_s
        self.started = datetime.now()
        self.items = list(items)
        self.results = [ItemResult(PENDING) for _ in self.items]
        self._written = 0.0

    def record(self, index: int, result: ItemResult) -> None:
        self.results[index] = result

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys((DONE, SKIPPED, FAILED, PENDING), 0)
        for result in self.results:
            counts[result.status] += 1
        return counts

    def rows(self) -> list[dict[str, Any]]:
        return [{"item": item.name, "input": ";".join(item.images), "status": result.status,
                 "output": result.output, "seconds": result.seconds, "error": result.error}
                for item, result in zip(self.items, self.results)]

    def write(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._written < self.interval_s:
            return
        self._written = now
        rows = self.rows()
        outputs.write_json_atomic(self.json_path, {
            "source": self.source,
            "runner": self.runner,
            "started": self.started.isoformat(timespec="seconds"),
            "updated": datetime.now().isoformat(timespec="seconds"),
            "counts": self.counts(),
            "items": rows,
        })
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=REPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({**row, "seconds": "" if row["seconds"] is None else row["seconds"]}
                         for row in rows)
        outputs.write_text_atomic(self.csv_path, buffer.getvalue())


# --- the batch --------------------------------------------------------------------------------
