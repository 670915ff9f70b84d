"""Build helper for the CUDA kernels of torch_utils/ops (placeholder until the kernels land)."""


def get_ops_plugin(name):
    return None
