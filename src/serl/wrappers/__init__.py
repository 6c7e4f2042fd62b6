"""Gymnasium wrappers shared by simulated and real tasks."""

from serl.wrappers.chunking import Chunking
from serl.wrappers.gripper import GripperPenalty
from serl.wrappers.intervention import Intervener, InterventionWrapper, control_period
from serl.wrappers.learned_reward import LearnedReward, MultiStageLearnedReward
from serl.wrappers.observations import DictObservation
from serl.wrappers.relative_frame import RelativeFrame

__all__ = [
    "Chunking",
    "DictObservation",
    "GripperPenalty",
    "Intervener",
    "InterventionWrapper",
    "LearnedReward",
    "MultiStageLearnedReward",
    "RelativeFrame",
    "control_period",
]
