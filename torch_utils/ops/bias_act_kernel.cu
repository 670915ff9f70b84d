// bias_act kernel: one thread per element, grid-stride loop; all arithmetic is in bias_act_kernel.h.

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "bias_act_kernel.h"

template <class T> __global__ void bias_act_kernel(BiasActArgs a) {
    using A = typename SG2Acc<T>::type;
    const int64_t step = int64_t(blockDim.x) * gridDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < a.size; i += step)
        bias_act_one<T, A>(a, i);
}

template <class T> void bias_act_launch(const BiasActArgs& a) {
    if (a.size == 0) return;
    c10::cuda::CUDAGuard guard(a.device_index);
    const int threads = 256;
    const int64_t blocks = (a.size + threads - 1) / threads;
    const int grid = int(blocks < (1 << 20) ? blocks : (1 << 20));  // the loop covers the rest
    bias_act_kernel<T><<<grid, threads, 0, c10::cuda::getCurrentCUDAStream(a.device_index)>>>(a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template void bias_act_launch<float>(const BiasActArgs&);
template void bias_act_launch<double>(const BiasActArgs&);
template void bias_act_launch<c10::Half>(const BiasActArgs&);
template void bias_act_launch<c10::BFloat16>(const BiasActArgs&);
