"""What a person watches: trackers (TensorBoard), the progress reporter, insight, plots, the
model summary."""
