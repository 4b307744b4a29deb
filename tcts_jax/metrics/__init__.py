"""Evaluation metrics: pure functions on feature arrays (float64 internally, results on the host).

The exact alignment checker of captioned shapes is dataset-specific and lives beside its dataset
(`tcts_jax.data.shapes_alignment`); the eval job's evaluators (tcts_jax/evaluation/evaluators/) wrap these.
"""

from tcts_jax.metrics.clip_score import clip_score
from tcts_jax.metrics.fid import feature_statistics, fid_from_features, frechet_distance
from tcts_jax.metrics.mid import mid

__all__ = ['frechet_distance', 'feature_statistics', 'fid_from_features', 'mid', 'clip_score']
