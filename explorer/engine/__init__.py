"""Tensors in, events out: data sources, augmentation, the training loop, evaluation."""
