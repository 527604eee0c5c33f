"""Evaluation of Lookout's models on held-out data (`lookout eval ...`)."""
