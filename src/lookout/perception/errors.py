"""Perception errors: one exception per thing a user can get wrong, each with an actionable message.

All derive from `PerceptionError`, so a ROS node can catch one type, log the message and keep running.
"""

from __future__ import annotations


class PerceptionError(Exception):
    """Base class of every error raised by `lookout.perception`."""


class ModelFileError(PerceptionError):
    """A model file is missing, unreadable or not a detection model."""


class TextEncoderError(PerceptionError):
    """A text encoder cannot be used: not installed, weights missing, or not the one the model needs."""


class VocabularyError(PerceptionError, ValueError):
    """A vocabulary was refused (empty, too long, or unknown classes for a closed-set model)."""


class ImageConversionError(PerceptionError, ValueError):
    """An image message cannot be turned into pixels (unknown encoding, wrong size, step or data length)."""
