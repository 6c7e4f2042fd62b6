"""Gymnasium wrappers shared by simulated and real tasks."""
