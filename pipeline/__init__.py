"""Temporally stable neural style transfer for video."""
