"""Batched tensor augmentations: weak (SimCLR-style) and strong (RandAugment-style, see strong.py)."""

from clustering.augment.weak import PRESETS, WeakAugment, preset, to_float, weak_augment

__all__ = ["PRESETS", "WeakAugment", "preset", "to_float", "weak_augment"]
