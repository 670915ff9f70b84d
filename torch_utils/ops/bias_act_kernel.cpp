// Python binding of the bias_act kernel: checks the operands and fills BiasActArgs.
// tests/cpu_kernels/bias_act_cpu.cpp compiles this file with SG2_CPU_TEST defined and a CPU
// bias_act_launch, so CI exercises these checks and the kernel arithmetic without a GPU.

#include <torch/extension.h>

#include "bias_act_kernel.h"

#ifdef SG2_CPU_TEST
#define SG2_CHECK_DEVICE(t) TORCH_CHECK(!(t).is_cuda(), #t " must be a CPU tensor in the CPU test build")
#else
#define SG2_CHECK_DEVICE(t) TORCH_CHECK((t).is_cuda(), #t " must be a CUDA tensor")
#endif

static const void* optional_operand(const torch::Tensor& t, const torch::Tensor& v, const char* name) {
    if (t.numel() == 0) return nullptr;
    TORCH_CHECK(t.sizes() == v.sizes() && t.strides() == v.strides(), name, " must have the shape and strides of the first operand");
    TORCH_CHECK(t.scalar_type() == v.scalar_type() && t.device() == v.device(), name, " must have the dtype and device of the first operand");
    return t.data_ptr();
}

torch::Tensor bias_act(torch::Tensor v, torch::Tensor b, torch::Tensor x, torch::Tensor y, torch::Tensor d,
                       int64_t mode, int64_t dim, int64_t act, double alpha, double gain, double clamp) {
    SG2_CHECK_DEVICE(v);
    TORCH_CHECK(v.is_non_overlapping_and_dense(), "v must be dense (contiguous or channels_last)");
    TORCH_CHECK(0 <= dim && dim < v.dim(), "dim out of range");
    TORCH_CHECK(0 <= mode && mode <= 2, "mode must be 0, 1 or 2");
    TORCH_CHECK(kLinear <= act && act <= kSwish, "unknown activation id");
    BiasActArgs a{};
    if (b.numel()) {
        TORCH_CHECK(b.dim() == 1 && b.size(0) == v.size(dim) && b.is_contiguous(), "b must be contiguous with shape [v.shape[dim]]");
        TORCH_CHECK(b.scalar_type() == v.scalar_type() && b.device() == v.device(), "b must have v's dtype and device");
        a.b = b.data_ptr();
    }
    a.x = optional_operand(x, v, "x");
    a.y = optional_operand(y, v, "y");
    a.d = optional_operand(d, v, "d");
    TORCH_CHECK(mode == 0 || a.x || a.y || act == kLinear, "the gradient needs x or y");
    TORCH_CHECK(mode != 2 || (a.x && a.d), "the second derivative needs x and d");
    TORCH_CHECK(clamp < 0 || mode == 0 || a.y, "clamping needs y for the gradient");
    torch::Tensor out = torch::empty_like(v);  // dense input: same strides
    a.v = v.data_ptr();
    a.out = out.data_ptr();
    a.size = v.numel();
    a.step_dim = v.size(dim) > 1 ? v.stride(dim) : 1;  // a length-1 dimension may carry any stride
    a.size_dim = v.size(dim);
    a.mode = int(mode);
    a.act = int(act);
    a.alpha = alpha;
    a.gain = gain;
    a.clamp = clamp;
    a.device_index = v.is_cuda() ? v.get_device() : -1;
    if (a.size == 0) return out;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, v.scalar_type(), "bias_act",
                                    [&] { bias_act_launch<scalar_t>(a); });
    return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("bias_act", &bias_act, "Fused bias + activation + gain + clamp and its derivatives");
}
