"""serl: sample-efficient robotic reinforcement learning."""

from serl import envs as envs  # registers the serl/ gymnasium ids on import

__version__ = "0.1.0"
