"""What people do with a trained generator: seeds and latents (space), directions (SeFa and direction files),
projection of photos (W, W+, pivotal tuning), and video."""
