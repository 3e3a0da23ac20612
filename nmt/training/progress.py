"""Training progress that tells the truth on a terminal and off one, and always in ``train.log``.

- **Without a terminal** (SLURM, nohup, CI: stderr is not a TTY), every ``train.log_every`` updates one plain log
  line reaches the console and ``train.log``::

      step 1200/6000 (20%) | epoch 3 | loss 3.21 | lr 0.000912 | 7,900 tok/s | pad eff 0.93 | elapsed 9m51s | ETA 39m24s

- **On a terminal**, a tqdm bar on stderr shows the same figures, and the same plain line goes to the log files
  only (``train.log``), not under the bar. While the bar is shown, the console handlers of the logging tree write
  through :meth:`tqdm.tqdm.external_write_mode`, so that validation and checkpoint messages clear the bar, print
  on their own line and redraw it, instead of breaking it.

The ETA is the remaining updates at this session's average pace, validation and checkpoints included (they come
back at the same rate), and ``elapsed`` counts the whole run, resumed parts included.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger("nmt.training.trainer")  # progress lines read as the trainer's


class Progress:
    """Progress of one training session: a bar on a terminal, plain lines in the log (see the module docstring).

    Args:
        total: ``train.max_steps``.
        initial: the step this session starts from (0, or a resumed step).
        every: log a plain line every this many updates (``train.log_every``).
        enabled: False on ranks other than 0 (nothing is shown or logged).
        elapsed: wall seconds of the run before this session (a resumed run's earlier parts plus setup).
        terminal: whether stderr is a terminal (None: ask ``sys.stderr.isatty()``).
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(
        self,
        *,
        total: int,
        initial: int,
        every: int,
        enabled: bool = True,
        elapsed: float = 0.0,
        terminal: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.initial, self.every, self.enabled = total, initial, every, enabled
        self.clock, self.start, self.elapsed_before = clock, clock(), elapsed
        self.bar: Any = None
        self._swapped: list[tuple[logging.Logger, list[logging.Handler]]] = []
        if enabled and (sys.stderr.isatty() if terminal is None else terminal):
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="upd", dynamic_ncols=True, leave=False, file=sys.stderr)
            self._swapped = _write_above_bar(self.bar)

    def update(self, step: int, values: dict[str, Any], *, epoch: int) -> None:
        """Called once per update with the latest figures (``loss``, ``lr``, ``tok/s``, ...); logs a plain line
        on every ``every``-th step."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
        if step % self.every:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(f"epoch {epoch} | {_figures(values)}", refresh=False)
            log_to_files(log, logging.INFO, self.line(step, values, epoch=epoch))
        else:
            log.info(self.line(step, values, epoch=epoch))

    def line(self, step: int, values: dict[str, Any], *, epoch: int) -> str:
        """``step 1200/6000 (20%) | epoch 3 | loss 3.21 | ... | elapsed 9m51s | ETA 39m24s``."""
        seconds = self.clock() - self.start
        done = step - self.initial
        eta = _duration((self.total - step) * seconds / done) if done > 0 and seconds > 0 else "?"
        percent = f" ({100 * step // self.total}%)" if self.total else ""
        return (
            f"step {step}/{self.total}{percent} | epoch {epoch} | {_figures(values)} | "
            f"elapsed {_duration(self.elapsed_before + seconds)} | ETA {eta}"
        )

    def write(self, message: str) -> None:
        """Log ``message`` (on a terminal it is printed above the bar)."""
        if self.enabled:
            log.info(message)

    def close(self) -> None:
        """Remove the bar and give the console handlers back."""
        for logger, handlers in self._swapped:
            logger.handlers = handlers
        self._swapped = []
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class _AboveBar(logging.Handler):
    """A console handler that writes with the bar cleared and redraws it afterwards (its own level and filters
    still apply: it hands each record to the handler it wraps)."""

    def __init__(self, inner: logging.Handler, bar: Any) -> None:
        super().__init__(inner.level)  # loggers compare a record's level with the handler they hold: this one
        self.inner, self.bar = inner, bar

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        with self.bar.external_write_mode(file=getattr(self.inner, "stream", None)):
            return bool(self.inner.handle(record))

    def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover - handle() does the work
        self.inner.emit(record)


def _write_above_bar(bar: Any) -> list[tuple[logging.Logger, list[logging.Handler]]]:
    """Wrap every handler of the root and ``nmt`` loggers that does not write to a file (any of them may print on
    the console: Hydra's stream handler, the tools' stderr handler) in :class:`_AboveBar`. Returns what to
    restore."""
    swapped = []
    for logger in (logging.getLogger(), logging.getLogger("nmt")):
        handlers = list(logger.handlers)
        if any(not isinstance(h, logging.FileHandler) for h in handlers):
            logger.handlers = [h if isinstance(h, logging.FileHandler) else _AboveBar(h, bar) for h in handlers]
            swapped.append((logger, handlers))
    return swapped


def _file_handlers(logger: logging.Logger) -> Iterator[logging.FileHandler]:
    """The file handlers a record of ``logger`` reaches (the logger's and its ancestors', while they propagate)."""
    current: logging.Logger | None = logger
    while current is not None:
        yield from (h for h in current.handlers if isinstance(h, logging.FileHandler))
        current = current.parent if current.propagate else None


def log_to_files(logger: logging.Logger, level: int, message: str) -> None:
    """Log ``message`` to the log files ``logger`` reaches (``train.log``), not to the console."""
    if not logger.isEnabledFor(level):
        return
    record = logger.makeRecord(logger.name, level, __file__, 0, message, None, None)
    for handler in _file_handlers(logger):
        if record.levelno >= handler.level:
            handler.handle(record)


def _figures(values: dict[str, Any]) -> str:
    """``loss 3.21 | lr 0.000912 | 7,900 tok/s | pad eff 0.93``."""
    parts = []
    for name, value in values.items():
        if name == "tok/s":
            parts.append(f"{value:,.0f} tok/s")
        elif isinstance(value, float):
            parts.append(f"{name} {value:.3g}" if abs(value) < 1e-2 and value != 0 else f"{name} {value:.2f}")
        else:
            parts.append(f"{name} {value}")
    return " | ".join(parts)


def _duration(seconds: float) -> str:
    """``45s``, ``9m51s``, ``2h05m``, ``3d04h``."""
    s = max(round(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
