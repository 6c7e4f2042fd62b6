"""Gymnasium wrappers shared by simulated and real tasks."""

from serl.wrappers.gripper import GripperPenalty
from serl.wrappers.intervention import Intervener, InterventionWrapper, control_period
from serl.wrappers.observations import DictObservation
from serl.wrappers.relative_frame import RelativeFrame

__all__ = [
    "DictObservation",
    "GripperPenalty",
    "Intervener",
    "InterventionWrapper",
    "RelativeFrame",
    "control_period",
]
