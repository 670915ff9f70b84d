"""PyTorch helpers shared by the networks, training and metrics (the `torch_utils` namespace of the ecosystem)."""
