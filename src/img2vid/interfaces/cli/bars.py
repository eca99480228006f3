"""Terminal progress bars (tqdm, imported on first use): per stage for one video, one for a batch."""

from __future__ import annotations

import sys
from typing import Any


class ProgressBars:
    """One tqdm bar per progress stage (render, denoise, encode...), stacked."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.bars: dict[str, Any] = {}

    def __call__(self, event: Any) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        bar = self.bars.get(event.stage)
        if bar is None:
            bar = tqdm(total=event.total, desc=f"{event.stage:>8}", unit="it",
                       position=len(self.bars), leave=True, dynamic_ncols=True)
            self.bars[event.stage] = bar
        if event.total and bar.total != event.total:
            bar.total = event.total
        bar.n = event.done
        bar.refresh()

    def __enter__(self) -> ProgressBars:
        return self

    def __exit__(self, *_: object) -> None:
        for bar in self.bars.values():
            bar.close()


class BatchBar:
    """One bar for the whole batch: videos finished, with counts and the time left."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.bar: Any = None

    def __call__(self, event: Any) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=event.total, desc="batch", unit="video", dynamic_ncols=True)
        self.bar.set_postfix_str(event.message, refresh=False)
        self.bar.update(event.done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
