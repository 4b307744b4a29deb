"""Evaluation metrics: pure functions on feature arrays (float64 internally, results on the host)."""
from tcts_jax.metrics.alignment import detect_objects, score_batch, score_image
from tcts_jax.metrics.clip_score import clip_score
from tcts_jax.metrics.fid import feature_statistics, fid_from_features, frechet_distance
from tcts_jax.metrics.mid import mid

__all__ = ['frechet_distance', 'feature_statistics', 'fid_from_features', 'mid', 'clip_score',
           'detect_objects', 'score_image', 'score_batch']
