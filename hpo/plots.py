"""Matplotlib figures saved as PNG files: the Agg backend, one draw each, the same bytes for the
same numbers. Shared by the report's figures and a trial's artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """`matplotlib.pyplot` on the Agg backend (no screen needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: Path, dpi: int) -> Path:
    """Lay `fig` out tightly, write it to `path` and close it."""
    fig.tight_layout()
    # `tight_layout` leaves a placeholder layout engine behind, and `savefig` lays out (draws
    # without rendering) any figure that has one before drawing it: dropping the placeholder
    # saves that draw, which in a large study's figures is a third of their time.
    fig.set_layout_engine(None)
    # No "Software" stamp, so the same numbers give the same bytes.
    fig.savefig(path, dpi=dpi, metadata={"Software": None})
    pyplot().close(fig)
    return path
