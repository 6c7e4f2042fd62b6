"""Flax modules: MLPs, ensembles, policy heads, image encoders."""

from serl.networks.classifier import ClassifierNet, downsample
from serl.networks.critic import StateActionValue, critic_ensemble
from serl.networks.encoders import (
    BACKBONE_NAME,
    BACKBONES,
    FEATURE_DTYPE,
    POOLINGS,
    FlattenObservation,
    ImageEncoder,
    ObservationEncoder,
    ObsNorm,
    ResNet10,
    SmallCNN,
    SpatialLearnedEmbeddings,
    SpatialSoftmax,
    backbone_input,
    flatten_observation,
    frame_features,
    image_encoder_factory,
    make_backbone,
    merge_time_into_channels,
    standardize,
)
from serl.networks.ensemble import Ensemble, subsample_ensemble
from serl.networks.mlp import MLP, default_init, get_activation
from serl.networks.mobilenet import MobileNetV2
from serl.networks.policy import GaussianPolicy, TanhMultivariateNormalDiag
from serl.networks.pretrained import (
    cached_weights,
    load_params_npz,
    load_pretrained,
    resolve_pretrained,
    save_params_npz,
    weight_cache_dir,
)
from serl.networks.temperature import Temperature

__all__ = [
    "BACKBONES",
    "BACKBONE_NAME",
    "FEATURE_DTYPE",
    "MLP",
    "POOLINGS",
    "ClassifierNet",
    "Ensemble",
    "FlattenObservation",
    "GaussianPolicy",
    "ImageEncoder",
    "MobileNetV2",
    "ObsNorm",
    "ObservationEncoder",
    "ResNet10",
    "SmallCNN",
    "SpatialLearnedEmbeddings",
    "SpatialSoftmax",
    "StateActionValue",
    "TanhMultivariateNormalDiag",
    "Temperature",
    "backbone_input",
    "cached_weights",
    "critic_ensemble",
    "default_init",
    "downsample",
    "flatten_observation",
    "frame_features",
    "get_activation",
    "image_encoder_factory",
    "load_params_npz",
    "load_pretrained",
    "make_backbone",
    "merge_time_into_channels",
    "resolve_pretrained",
    "save_params_npz",
    "standardize",
    "subsample_ensemble",
    "weight_cache_dir",
]
