"""Distances that do not depend on the accelerator's matmul precision.

On recent GPUs the default float32 matmul is TF32, on TPUs bfloat16: with
it, nearest neighbours (core-set, TypiClust, MaxHerding, σ, ``iou_gain``)
stop matching full precision. XLA:CPU computes every float32 matmul in full
whatever the setting, so these tests check two things it can see: each
picker, run under ``jax.default_matmul_precision('bfloat16')``, equals its
float64 NumPy reference, and every matmul those runs lowered asks for
HIGHEST precision (a GPU or TPU would otherwise round it)."""

import re

import chex
import jax
import numpy as np
import pytest

import test_diversity
import test_learnability
import test_low_budget
import test_priority
from priojax.priority import diversity

# The pickers' NumPy-reference tests, rerun under the bfloat16 default.
REFERENCE_CHECKS = [
    test_diversity.test_matches_numpy_reference_with_reference_set,  # iou_diversity
    test_diversity.test_coreset_matches_k_center_reference,
    test_diversity.test_kmeans_pp_matches_numpy_reference,  # BADGE and k-means seeding
    test_diversity.test_min_distances_chunks_match_dense,
    test_low_budget.test_typiclust_matches_the_released_rule_on_given_clusters,
    test_low_budget.test_kmeans_matches_lloyd_from_the_same_seeding,
    test_low_budget.test_knn_distances_match_numpy_over_several_chunks,
    lambda: test_low_budget.test_maxherding_matches_a_numpy_greedy(()),
    lambda: test_low_budget.test_maxherding_matches_a_numpy_greedy((3, 30)),
    test_learnability.test_iou_gain_matches_a_numpy_kernel_regression_and_skips_the_stuck_region,
    test_learnability.test_iou_gain_kernel_regression_is_chunked_over_many_labelled_tiles,
    test_priority.test_iou_density_weights_uncertainty_by_representativeness,
]

DOT = re.compile(r'stablehlo\.dot_general .*precision = \[(\w+), (\w+)\]')


def test_pickers_under_bfloat16_default_precision_equal_float64_numpy(tmp_path):
  dump = tmp_path / 'ir'
  jax.config.update('jax_dump_ir_to', str(dump))
  try:
    # A new default precision is part of every jit's cache key: each
    # function is traced and lowered again, so the dump holds them all.
    with jax.default_matmul_precision('bfloat16'):
      for check in REFERENCE_CHECKS:
        check()
  finally:
    jax.config.update('jax_dump_ir_to', '')
  modules = sorted(dump.glob('*.mlir'))
  assert modules, 'no lowered module was dumped'
  dots = [(m.name, d) for m in modules for d in DOT.findall(m.read_text())]
  assert dots, 'the pickers lowered no matmul'
  rounded = sorted({name for name, precision in dots if precision != ('HIGHEST', 'HIGHEST')})
  assert not rounded, f'matmuls at the default precision in {rounded}'


@pytest.mark.parametrize('offset', [0.0, 50.0])
def test_nearest_neighbours_of_offset_embeddings_match_float64(offset):
  # Mean-pooled ReLU features share a large positive offset; ||x||² + ||y||²
  # - 2 x·y then cancels most of float32's digits unless centred first.
  rng = np.random.default_rng(0)
  x = (rng.random((300, 16)) + offset).astype(np.float32)
  ref = (rng.random((700, 16)) + offset).astype(np.float32)
  want = np.linalg.norm(x[:, None].astype(np.float64) - ref[None].astype(np.float64), axis=-1).min(1)
  got = np.asarray(diversity.min_distances(x, ref))
  chex.assert_trees_all_close(got, want, rtol=1e-3, atol=1e-4)
