"""Evaluation metrics: FID, IS, KID and improved precision/recall on the TF 2015-12-05 Inception-v3.

Importing this package loads no weights, touches no network and never imports TensorFlow; the
extractor fetches / loads its weights on first call. See inception.py (network), weights.py (fetching,
safe torch-file reading, conversion), preprocess.py (TF1 resize), scores.py (arithmetic),
reference.py (reference statistics, `compute`), and `python -m jaxgen.metrics --help` for the CLI.
"""
from jaxgen.metrics.inception import InceptionExtractor, InceptionV3
from jaxgen.metrics.preprocess import resize_and_scale, to_uint8
from jaxgen.metrics.reference import (ReferenceStats, Scorer, compute, reference_stats,
                                      stats_from_features)
from jaxgen.metrics.scores import (FeatureAccumulator, frechet_distance, inception_score, kid,
                                   precision_recall)
from jaxgen.metrics.weights import WeightsError
