"""The step profile's reading of TensorFlow's trace (`benchmarks.step_profile`).

It reads the profiler's `.xplane.pb` through the protobuf module TensorFlow ships
(`tensorflow.tsl.profiler.protobuf.xplane_pb2`), not a documented API: this fails loudly if
that module or the trace's layout changes.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.step_profile import PARTS, part_of, profile_epoch, read_profile
from hpo.testing import full_params
from hpo.train import fit
from tests.test_train import tiny_data


def test_kernels_are_sorted_by_their_scope() -> None:
    prefix = "while/body/_1/while/StatefulPartitionedCall/"
    assert part_of(prefix + "mlp_1/dense_1_1/Relu:_MklNativeFusedMatMul", "mlp") == "forward"
    assert part_of(prefix + "gradient_tape/mlp_1/dense_1_1/MatMul:_MklMatMul", "mlp") == (
        "gradients"
    )
    assert part_of(prefix + "adam/ResourceApplyAdam:ResourceApplyAdam", "mlp") == "optimizer"
    assert part_of(prefix + "compile_loss/sparse:SparseSoftmaxCrossEntropyWithLogits", "mlp") == (
        "loss"
    )
    assert part_of("ArgMax:ArgMax", "mlp") == "bookkeeping"


def test_a_profiled_epoch_is_read_by_part(tmp_path: Path) -> None:
    params = full_params({"first_units": 8, "units": 8, "epochs": 2, "batch_size": 20})
    run = fit(params, tiny_data(), 0, callbacks=[profile_epoch(1, tmp_path)])
    profile = read_profile(tmp_path, run.model.name)
    assert set(profile["seconds"]) <= set(PARTS)
    for part in ("forward", "gradients", "optimizer"):
        assert profile["seconds"].get(part, 0.0) > 0, part
    assert profile["executor_s"] >= 0
