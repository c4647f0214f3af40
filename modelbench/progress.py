"""Progress bars with rate and ETA, for the engine's ProgressSink protocol."""

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.1f}/s", style="progress.data.speed")


class RichProgress:
    """Live bars on a terminal; on a pipe or in CI, a plain line per task every `every_s` seconds."""

    def __init__(self, console: Console, every_s: float = 15.0):
        self.console = console
        self.every_s = every_s
        self._last_line: dict[str, float] = {}
        self.progress = Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> "RichProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def start(self, label: str, total: int, done: int = 0) -> None:
        if label in self.tasks:
            self.progress.update(self.tasks[label], total=total, completed=done)
        else:
            self.tasks[label] = self.progress.add_task(label, total=total, completed=done)

    def advance(self, label: str, n: int) -> None:
        task_id = self.tasks[label]
        self.progress.advance(task_id, n)
        if self.console.is_terminal:
            return
        task = self.progress.tasks[task_id]
        now = time.monotonic()
        if task.finished or now - self._last_line.get(label, 0.0) >= self.every_s:
            self._last_line[label] = now
            rate = task.speed or 0.0
            eta = f", eta {task.time_remaining:.0f}s" if task.time_remaining else ""
            self.console.print(
                f"{label}: {task.completed:.0f}/{task.total:.0f} ({rate:.1f}/s{eta})", highlight=False
            )
