"""Where training figures go: ``metrics.jsonl`` and TensorBoard (the console and ``train.log``: :mod:`.progress`).

Only rank 0 builds a :class:`MetricsWriter`; the others get a disabled one, so call sites need no rank checks.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch


class MetricsWriter:
    """One JSON object per logged step/evaluation in ``metrics.jsonl`` plus the same scalars in TensorBoard.

    Args:
        run_dir: the run directory (``metrics.jsonl`` and ``tensorboard/`` go there).
        enabled: False on ranks other than 0 (every method is then a no-op).
        resume_step: when resuming, records after this step (written by a killed run after its last
            checkpoint) are dropped from ``metrics.jsonl`` and purged from TensorBoard, so each step appears once.
    """

    def __init__(self, run_dir: Path, *, enabled: bool = True, resume_step: int | None = None) -> None:
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        self.path = run_dir / "metrics.jsonl"
        if resume_step is not None and self.path.exists():
            kept = [
                line
                for line in self.path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resume_step
            ]
            self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        self.file = self.path.open("a", encoding="utf-8")
        from torch.utils.tensorboard import SummaryWriter  # imported lazily: TensorBoard is slow to import

        purge = None if resume_step is None else resume_step + 1
        self.fresh = not any((run_dir / "tensorboard").glob("events.out.tfevents.*"))  # no session wrote here yet
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=purge)

    def log(self, kind: str, step: int, values: dict[str, Any]) -> None:
        """Append ``{"kind": kind, "step": step, **values}`` and send numeric values to TensorBoard as
        ``{kind}/{name}``."""
        if not self.enabled:
            return
        record = {"kind": kind, "step": step, "time": round(time.time(), 3), **values}
        self.file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.file.flush()
        for name, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                self.writer.add_scalar(f"{kind}/{name}", value, step)

    def figure(self, tag: str, figure: Any, step: int) -> None:
        if self.enabled:
            self.writer.add_figure(tag, figure, step, close=True)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        if self.enabled:
            self.writer.add_text(tag, text, step)

    def hparams(self, hparams: dict[str, Any]) -> None:
        """The run's settings for TensorBoard's HPARAMS tab, written once per run into the run itself.

        Only a session-start summary is written (in a new run's first event file; a resumed or restarted run's
        directory already has it): TensorBoard then takes the columns from the union of all runs' settings (an
        RNN's next to a Transformer's) and the metric columns from the runs' scalars, among them the final scores
        of :meth:`final_scores`. torch's ``add_hparams`` would instead add a second run (a subdirectory) per call.
        """
        if not self.enabled or not self.fresh:
            return
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        plain = {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in hparams.items()}
        _, start, _ = hparams_summaries(plain, {})
        self.writer.file_writer.add_summary(start)
        self.fresh = False

    def final_scores(self, scores: dict[str, float], step: int) -> None:
        """The run's final scores as scalars at ``step`` (the HPARAMS tab's metrics), and the session's end."""
        if not self.enabled:
            return
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        for tag, value in scores.items():
            self.writer.add_scalar(tag, value, step)
        _, _, end = hparams_summaries({}, {})
        self.writer.file_writer.add_summary(end)
        self.writer.flush()

    def flush(self) -> None:
        if self.enabled:
            self.writer.flush()

    def close(self) -> None:
        if self.enabled:
            self.writer.close()
            self.file.close()
            self.enabled = False


class Window:
    """Figures summed over the updates since the last log line.

    ``seconds`` is the time spent in updates; the trainer adds it per update itself, since on a GPU an update's
    figures arrive one update later than its time.
    """

    def __init__(self) -> None:
        self.reset()
        self.loss = self.lr = math.nan
        self.align_loss: float | None = None

    def reset(self) -> None:
        self.steps = 0
        self.seconds = self.tokens = self.real = self.padded = self.loss_sum = self.nll_sum = self.finite_tokens = 0.0
        self.align_sum = self.align_rows = 0.0  # guided alignment: loss summed over supervised attention rows
        self.grad_norm = math.nan

    def add(self, f: dict[str, float], seconds: float = 0.0) -> None:
        self.steps += 1
        self.seconds += seconds
        self.tokens += f["tokens"]
        self.real += f["real"]
        self.padded += f["padded"]
        self.grad_norm = f["grad_norm"]
        self.lr = f["lr"]
        self.loss = f["loss"]
        self.align_loss = f.get("align_loss")
        if math.isfinite(f["loss"]):
            self.loss_sum += f["loss"] * f["tokens"]
            self.nll_sum += f["nll"] * f["tokens"]
            self.finite_tokens += f["tokens"]
        if "align_rows" in f and math.isfinite(f["align_loss"]):
            self.align_sum += f["align_loss"] * f["align_rows"]
            self.align_rows += f["align_rows"]

    def brief(self) -> dict[str, Any]:
        """The figures of the progress bar."""
        rate = self.tokens / max(self.seconds, 1e-9)
        align = {} if self.align_loss is None else {"align_loss": self.align_loss}
        return {"loss": self.loss, **align, "lr": self.lr, "tok/s": rate, "pad eff": self.real / max(self.padded, 1.0)}

    def record(
        self, *, flops_per_token: float, peak_flops: float, world_size: int, epoch: int, tgt_tokens: int
    ) -> dict[str, Any]:
        """The figures of one ``metrics.jsonl`` record: means over the window, throughput and its FLOP share."""
        loss = self.loss_sum / max(self.finite_tokens, 1.0)
        nll = self.nll_sum / max(self.finite_tokens, 1.0)
        rate = self.tokens / max(self.seconds, 1e-9)
        return {
            "loss": loss,
            "nll": nll,
            "ppl": math.exp(min(nll, 50.0)),
            "lr": self.lr,
            "grad_norm": self.grad_norm,
            "tokens_per_s": rate,
            "flops_share": flops_per_token * rate / (peak_flops * world_size),
            "padding_efficiency": self.real / max(self.padded, 1.0),
            "epoch": epoch,
            "tgt_tokens": tgt_tokens,
            **({"align_loss": self.align_sum / self.align_rows} if self.align_rows else {}),
        }


def measure_matmul_peak(device: torch.device, dtype: torch.dtype, *, repeats: int = 3) -> float:
    """Best-of-``repeats`` FLOP/s of a 4096×256 @ 256×1024 matmul (a Transformer FFN's shape at 4k tokens)."""
    a = torch.randn(4096, 256, device=device, dtype=dtype)
    b = torch.randn(256, 1024, device=device, dtype=dtype)
    best = math.inf
    for _ in range(repeats + 1):  # the first round warms up the kernel
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for _ in range(8):
            torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, (time.perf_counter() - t0) / 8)
    return 2 * a.size(0) * a.size(1) * b.size(1) / best


def flops_per_token(model: torch.nn.Module, batch: Any) -> float:
    """Matmul FLOPs of one forward + backward over ``batch`` (torch's flop counter), per real target token.

    Counted rather than estimated as 6 × parameters: embedding lookups cost no matmul (6N overcounts an RNN with
    two 8k-row tables by ~1.7×), and padded positions do cost one. Gradients are cleared afterwards; dropout may
    draw random numbers, so callers that care save and restore the RNG state around this.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)
        logits.float().logsumexp(-1).sum().backward()  # the loss's own cost is not a matmul: any scalar will do
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / max(batch.num_tgt_tokens, 1)


def attention_figure(attention: Any, src_pieces: list[str], tgt_pieces: list[str], title: str = "") -> Any:
    """TensorBoard's heatmap of one sentence's attention: :func:`nmt.analysis.attention.heatmap_figure` (the
    renderer of the dumps too) with the word links the attention gives drawn on.

    Args:
        attention: (T, S) weights (rows: target positions incl. ``</s>``; columns: source pieces incl. ``</s>``).
        src_pieces: S labels. tgt_pieces: T labels.
    """
    from nmt.analysis.alignment import attention_to_links
    from nmt.analysis.attention import heatmap_figure

    weights = torch.as_tensor(attention, dtype=torch.float32).cpu()
    links = attention_to_links(weights, src_pieces[:-1], tgt_pieces[:-1])  # without the EOS row and column
    return heatmap_figure(weights, src_pieces, tgt_pieces, title=title, links=links)
