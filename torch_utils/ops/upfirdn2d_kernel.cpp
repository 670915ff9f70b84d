// Python binding of the upfirdn2d kernels: checks the operands and fills Upfirdn2dArgs.
// tests/cpu_kernels/upfirdn2d_cpu.cpp compiles this file with SG2_CPU_TEST defined and a CPU
// upfirdn2d_launch, so CI exercises these checks and the kernel arithmetic without a GPU.

#include <torch/extension.h>

#include "upfirdn2d_kernel.h"

#ifdef SG2_CPU_TEST
#define SG2_CHECK_DEVICE(t) TORCH_CHECK(!(t).is_cuda(), #t " must be a CPU tensor in the CPU test build")
#else
#define SG2_CHECK_DEVICE(t) TORCH_CHECK((t).is_cuda(), #t " must be a CUDA tensor")
#endif

torch::Tensor upfirdn2d(torch::Tensor x, torch::Tensor f, int64_t up_x, int64_t up_y, int64_t down_x, int64_t down_y,
                        int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1, bool flip, double gain,
                        bool allow_tiled) {
    SG2_CHECK_DEVICE(x);
    TORCH_CHECK(x.dim() == 4, "x must be [N, C, H, W]");
    TORCH_CHECK(f.dim() == 2 && f.numel() > 0 && f.is_contiguous(), "f must be a contiguous 2-D filter");
    TORCH_CHECK(f.device() == x.device(), "f must be on x's device");
    const auto f_type = x.scalar_type() == at::ScalarType::Double ? at::ScalarType::Double : at::ScalarType::Float;
    TORCH_CHECK(f.scalar_type() == f_type, "f must be float32 (float64 for float64 x)");
    TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1, "up and down must be >= 1");
    TORCH_CHECK(x.numel() <= INT32_MAX && f.numel() <= INT32_MAX, "tensor too large");

    // Keep channels_last inputs channels_last; anything else becomes contiguous.
    const bool channels_last = !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
    if (!channels_last) x = x.contiguous();
    const int64_t out_h = (x.size(2) * up_y + pad_y0 + pad_y1 - f.size(0)) / down_y + 1;
    const int64_t out_w = (x.size(3) * up_x + pad_x0 + pad_x1 - f.size(1)) / down_x + 1;
    TORCH_CHECK(out_h >= 1 && out_w >= 1, "output would be empty");
    TORCH_CHECK(x.size(0) * x.size(1) * out_h * out_w <= INT32_MAX, "output too large");
    torch::Tensor y = torch::empty({x.size(0), x.size(1), out_h, out_w},
                                   x.options().memory_format(channels_last ? at::MemoryFormat::ChannelsLast
                                                                           : at::MemoryFormat::Contiguous));
    if (y.numel() == 0) return y;

    Upfirdn2dArgs a{};
    a.x = x.data_ptr();
    a.f = f.data_ptr();
    a.y = y.data_ptr();
    a.n = int(x.size(0)); a.c = int(x.size(1)); a.in_h = int(x.size(2)); a.in_w = int(x.size(3));
    a.out_h = int(out_h); a.out_w = int(out_w);
    a.f_h = int(f.size(0)); a.f_w = int(f.size(1));
    a.sx_n = x.stride(0); a.sx_c = x.stride(1); a.sx_h = x.stride(2); a.sx_w = x.stride(3);
    a.sy_n = y.stride(0); a.sy_c = y.stride(1); a.sy_h = y.stride(2); a.sy_w = y.stride(3);
    a.up_x = int(up_x); a.up_y = int(up_y); a.down_x = int(down_x); a.down_y = int(down_y);
    a.pad_x0 = int(pad_x0); a.pad_y0 = int(pad_y0);
    a.flip = flip;
    a.channel_first = channels_last;
    a.gain = gain;
    a.device_index = x.is_cuda() ? x.get_device() : -1;

    // The tiled path stages float patches of row-major planes in shared memory.
    const bool tiled = allow_tiled && !channels_last && f_type == at::ScalarType::Float && upfirdn2d_tiled_ok(a);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, x.scalar_type(), "upfirdn2d",
                                    [&] { upfirdn2d_launch<scalar_t>(a, tiled); });
    return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("upfirdn2d", &upfirdn2d, "Upsample, FIR filter and downsample a batch of images");
}
