"""Import TensorFlow without its C++ start-up chatter (CUDA probing, oneDNN notes) on stderr."""

from __future__ import annotations

import os
import sys


def import_tensorflow() -> None:
    """Import TensorFlow once with file descriptor 2 silenced; Python errors still propagate."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    import tensorflow as tf

    # A new model per trial retraces Keras's train function by design; the warning is noise.
    tf.get_logger().setLevel("ERROR")
