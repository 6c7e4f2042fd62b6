"""Flax modules: MLPs, ensembles, policy heads, image encoders."""

from serl.networks.critic import StateActionValue, critic_ensemble
from serl.networks.encoders import (
    BACKBONE_NAME,
    BACKBONES,
    POOLINGS,
    FlattenObservation,
    ImageEncoder,
    ObservationEncoder,
    ObsNorm,
    ResNet10,
    SmallCNN,
    SpatialLearnedEmbeddings,
    SpatialSoftmax,
    flatten_observation,
    image_encoder_factory,
    merge_time_into_channels,
    standardize,
)
from serl.networks.ensemble import Ensemble, subsample_ensemble
from serl.networks.mlp import MLP, default_init, get_activation
from serl.networks.policy import GaussianPolicy, TanhMultivariateNormalDiag
from serl.networks.pretrained import load_params_npz, load_pretrained, save_params_npz
from serl.networks.temperature import Temperature

__all__ = [
    "BACKBONES",
    "BACKBONE_NAME",
    "MLP",
    "POOLINGS",
    "Ensemble",
    "FlattenObservation",
    "GaussianPolicy",
    "ImageEncoder",
    "ObsNorm",
    "ObservationEncoder",
    "ResNet10",
    "SmallCNN",
    "SpatialLearnedEmbeddings",
    "SpatialSoftmax",
    "StateActionValue",
    "TanhMultivariateNormalDiag",
    "Temperature",
    "critic_ensemble",
    "default_init",
    "flatten_observation",
    "get_activation",
    "image_encoder_factory",
    "load_params_npz",
    "load_pretrained",
    "merge_time_into_channels",
    "save_params_npz",
    "standardize",
    "subsample_ensemble",
]
