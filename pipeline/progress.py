"""Progress for long search steps: a tqdm bar on a terminal, plain lines on stderr otherwise.

A search or a predictor's sample collection can run for minutes; in a log file, a CI job or behind a
pipe a progress bar shows nothing useful (tqdm redraws one line with carriage returns), so there the
progress is a line every `every_s` seconds (and the first and the last step), each complete on its own:

    predictor samples: 40/300 subnets measured, last 91.20%, 52 s elapsed, about 5.6 min left
    search nucleo-f412zg: generation 10/40, 2345 archs evaluated, best 97.12% predicted, 3.2 s
"""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


def _fmt_seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


class ProgressLines:
    """`update(done, text)` prints `label: text, <elapsed>[, about <eta> left]` when due.

    Due: the first update, the last (done == total), and any update `every_s` seconds after the
    previous line. `stream` defaults to sys.stderr; `clock` is injectable for tests.
    """

    def __init__(self, label: str, total: int, *, every_s: float = 10.0, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, eta: bool = True):
        self.label, self.total, self.every_s, self.eta = label, int(total), float(every_s), eta
        self.stream = stream
        self.clock = clock
        self.t0 = clock()
        self.last: float | None = None
        self.lines = 0
        self.start_done: int | None = None

    def update(self, done: int, text: str) -> bool:
        now = self.clock()
        if self.start_done is None:
            self.start_done = done - 1 if done > 0 else 0
        due = self.last is None or done >= self.total or now - self.last >= self.every_s
        if not due:
            return False
        elapsed = now - self.t0
        line = f"{self.label}: {text}, {_fmt_seconds(elapsed)} elapsed"
        new = done - self.start_done
        if self.eta and 0 < done < self.total and new > 0:
            line += f", about {_fmt_seconds(elapsed / new * (self.total - done))} left"
        stream = self.stream if self.stream is not None else sys.stderr
        print(line, file=stream, flush=True)
        self.last = now
        self.lines += 1
        return True


def wants_lines(stream: TextIO | None = None) -> bool:
    """True when progress should be plain lines: the stream is not a terminal."""
    stream = stream if stream is not None else sys.stderr
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):
        return True


class Progress:
    """Progress of `total` steps the one way for the stream: a tqdm bar on a terminal, `ProgressLines`
    otherwise. `update(done, text)` takes the steps done so far; the text is what a line shows (a bar
    shows the count alone). Disabled (`enabled=False`) it prints nothing."""

    def __init__(self, label: str, total: int, *, initial: int = 0, unit: str = "it", enabled: bool = True,
                 every_s: float = 10.0, leave: bool = True, stream: TextIO | None = None):
        self.bar = self.lines = None
        if not enabled:
            return
        if wants_lines(stream):
            self.lines = ProgressLines(label, total, every_s=every_s, stream=stream)
        else:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=initial, unit=unit, desc=label,
                            file=stream if stream is not None else sys.stderr, dynamic_ncols=True, leave=leave)

    def update(self, done: int, text: str) -> None:
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
        elif self.lines is not None:
            self.lines.update(done, text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
