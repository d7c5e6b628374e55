"""What a person watches: trackers (TensorBoard, MLflow, W&B; observe/trackers/), the progress
reporter, insight, plots, the model summary."""
