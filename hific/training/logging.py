"""Metrics logging for training: JSONL always, TensorBoard when installed."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Dict, Optional


class MetricsLogger:
    """Append one JSON object per record to ``metrics.jsonl``.

    Only rank 0 should create one. TensorBoard event files are written to
    the same folder when the ``tensorboard`` package is importable.

    Args:
        out_dir: Run folder.
        tensorboard: Try to write TensorBoard events as well.
    """

    def __init__(self, out_dir: Path, tensorboard: bool = True) -> None:
        self.path = Path(out_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open for the run; closed by close())
        self._tb: Optional[Any] = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(out_dir))
            except ImportError:
                self._tb = None

    def log(self, kind: str, step: int, values: Dict[str, float]) -> None:
        """Write a record such as ``{"kind": "train", "step": 10, "loss": ...}``."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()}
        record = {"kind": kind, "step": step, "time": round(time.time(), 3), **clean}
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()
