"""The model layer: networks built from config, checkpoints, probabilities and saliency, below training, evaluation, export and inference."""
