"""Evaluation: metric functions and the field's benchmark protocols."""
