"""Running an exported model on new images: the preprocessing recipe, image decoding, PHI checks, prediction."""
