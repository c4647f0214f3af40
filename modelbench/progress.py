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
)
from rich.text import Text


def new_rate(task: Task) -> float | None:
    """Items per second of new work since the task started: stored work found in the store, and
    a burst of quick failures at the end, do not make a slow run look fast (a windowed speed
    ended at "12/12 1.9/s" on a run that had managed 0.04/s)."""
    elapsed = task.finished_time if task.finished_time is not None else task.elapsed
    fields = task.fields
    new = task.completed - fields.get("stored", 0) - fields.get("skipped", 0) - fields.get("failed", 0)
    if not elapsed or elapsed <= 0 or new <= 0:
        return None
    return new / elapsed


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        rate = new_rate(task)
        return Text("" if rate is None else f"{rate:,.2f}/s", style="progress.data.speed")


def eta_s(task: Task) -> float | None:
    rate = new_rate(task)
    if rate is None or task.total is None:
        return None
    return max(0.0, task.total - task.completed) / rate


class EtaColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        eta = eta_s(task)
        if eta is None or task.finished:
            return Text("")
        return Text(f"eta {int(eta) // 60}:{int(eta) % 60:02d}", style="progress.remaining")


class FailedColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        failed = task.fields.get("failed", 0)
        return Text(f"{failed} failed" if failed else "", style="bold red")


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
            FailedColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            EtaColumn(),
            console=console,
        )
        self.tasks: dict[str, TaskID] = {}
        self.is_terminal = console.is_terminal  # asked once: it is a system call per question

    def __enter__(self) -> "RichProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def start(self, label: str, total: int, done: int = 0) -> None:
        if label in self.tasks:
            self.progress.update(
                self.tasks[label], total=total, completed=done, stored=done, skipped=0, failed=0
            )
        else:
            self.tasks[label] = self.progress.add_task(
                label, total=total, completed=done, stored=done, skipped=0, failed=0
            )

    def advance(
        self, label: str, n: int, failed: int = 0, stored: bool = False, skipped: bool = False
    ) -> None:
        task_id = self.tasks[label]
        task = self.progress.tasks[task_id]
        fields = {"failed": task.fields.get("failed", 0) + failed}
        if stored:
            fields["stored"] = task.fields.get("stored", 0) + n
        if skipped:
            fields["skipped"] = task.fields.get("skipped", 0) + n
        self.progress.update(task_id, advance=n, **fields)
        if self.is_terminal or n == 0:
            return
        now = time.monotonic()
        if task.finished or now - self._last_line.get(label, 0.0) >= self.every_s:
            self._last_line[label] = now
            rate = new_rate(task)
            parts = [f"{rate:.2f}/s new" if rate else "no new work yet"]
            if task.fields.get("stored"):
                parts.append(f"{task.fields['stored']} from the store")
            if task.fields.get("skipped"):
                parts.append(f"{task.fields['skipped']} with nothing to grade")
            if task.fields.get("failed"):
                parts.append(f"{task.fields['failed']} failed")
            eta = eta_s(task)
            if eta and not task.finished:
                parts.append(f"eta {eta:.0f}s")
            self.console.print(
                f"{label}: {task.completed:.0f}/{task.total:.0f} ({', '.join(parts)})", highlight=False
            )
