"""The audio front end, defined once in numpy (torch-free). training.frontend is its torch twin."""

from seld_edge.features.config import FEATURE_KINDS, FeatureConfig, feature_config
from seld_edge.features.extract import (
    FileFeatures,
    compute_features,
    feature_difference,
    features_from_file,
    filterbank_for,
)

__all__ = [
    "FEATURE_KINDS",
    "FeatureConfig",
    "FileFeatures",
    "compute_features",
    "feature_config",
    "feature_difference",
    "features_from_file",
    "filterbank_for",
]
