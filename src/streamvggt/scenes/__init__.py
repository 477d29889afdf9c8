"""Procedural scenes (textured rooms with objects, exact depth and cameras) for training, evaluation and the demo."""
