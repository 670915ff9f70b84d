"""Networks, losses, datasets and the training loop."""
