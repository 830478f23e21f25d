"""The numpy learning-rate formulas of the report match Keras's schedules step for step."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from hpo.schedules import learning_rate_at
from hpo.testing import full_params
from hpo.tfquiet import import_tensorflow

CASES: list[dict[str, Any]] = [
    {"schedule": "constant", "learning_rate": 3e-3},
    {"schedule": "exponential", "learning_rate": 1e-2, "decay_steps": 700, "decay_rate": 0.6},
    {"schedule": "cosine", "learning_rate": 2e-3, "alpha": 0.0},
    {"schedule": "cosine", "learning_rate": 2e-3, "alpha": 0.2},
    {"schedule": "cosine_restarts", "learning_rate": 1e-3, "first_decay_steps": 300,
     "t_mul": 2.0, "m_mul": 1.0, "alpha": 0.0},
    {"schedule": "cosine_restarts", "learning_rate": 1e-3, "first_decay_steps": 250,
     "t_mul": 1.0, "m_mul": 0.8, "alpha": 0.1},
    {"schedule": "cosine_restarts", "learning_rate": 5e-3, "first_decay_steps": 120,
     "t_mul": 1.5, "m_mul": 0.9, "alpha": 0.05},
    {"schedule": "warmup_cosine", "learning_rate": 1e-2, "warmup_steps": 200, "alpha": 0.1},
    {"schedule": "warmup_cosine", "learning_rate": 1e-2, "warmup_steps": 5000, "alpha": 0.0},
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["schedule"])
def test_every_step_matches_the_keras_schedule(case: dict[str, Any]) -> None:
    import_tensorflow()
    import keras

    from hpo.model import build_schedule

    params = full_params({**case, "epochs": 6})
    steps_per_epoch = 150
    steps = np.arange(0, 6 * steps_per_epoch + 60)  # past the budget too
    schedule = build_schedule(params, steps_per_epoch)
    if isinstance(schedule, float):
        keras_rates = np.full(len(steps), schedule)
    else:
        keras_rates = np.array(
            [float(keras.ops.convert_to_numpy(schedule(int(step)))) for step in steps]
        )
    ours = learning_rate_at(params, steps_per_epoch, steps)
    np.testing.assert_allclose(ours, keras_rates, rtol=2e-5, atol=1e-9)
