"""Networks, losses, datasets and the training loop; checkpoint files in checkpoint/."""
