"""What several benchmark scripts share (they run as scripts, so this folder is on ``sys.path``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def model_and_digest(preset: str, checkpoint: Optional[str]) -> Tuple[torch.nn.Module, str]:  # noqa: F821
    """``(model, digest)`` of ``checkpoint``, or of random weights (seed 0) for ``preset``."""
    import torch

    from hific.checkpoint import load_model, model_digest
    from hific.config import get_config
    from hific.models import build_model

    if checkpoint:
        return load_model(checkpoint)
    torch.manual_seed(0)
    model = build_model(get_config(preset))
    return model, model_digest(model.config, model.state_dict())


def photo_paths(folder: str, limit: int = 0, pattern: str = "*") -> List[Path]:
    """The images in ``folder`` whose names match ``pattern`` (sorted by name), the first ``limit`` if it is set."""
    from hific.limits import IMAGE_EXTENSIONS

    paths = sorted(q for q in Path(folder).glob(pattern) if q.suffix.lower() in IMAGE_EXTENSIONS)
    return paths[:limit] if limit else paths
