// upfirdn2d kernels: a generic one (one thread per output pixel) and a tiled one that stages
// an input patch in shared memory. All arithmetic and index math is in upfirdn2d_kernel.h.

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "upfirdn2d_kernel.h"

template <class T> __global__ void upfirdn2d_generic_kernel(Upfirdn2dArgs a, int64_t size) {
    using A = typename SG2Acc<T>::type;
    const int64_t step = int64_t(blockDim.x) * gridDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < size; i += step)
        upfirdn2d_one<T, A, A>(a, i);
}

// Block = one output tile; blockIdx.y walks the image planes (n * c of them).
template <class T> __global__ void upfirdn2d_tiled_kernel(Upfirdn2dArgs a) {
    extern __shared__ float smem[];  // filter taps, then the input patch
    float* f = smem;
    float* patch = smem + a.f_h * a.f_w;
    for (int k = threadIdx.x; k < a.f_h * a.f_w; k += blockDim.x)
        f[k] = static_cast<const float*>(a.f)[k];
    const Upfirdn2dTile t = upfirdn2d_tile(a, blockIdx.x);
    const int patch_size = t.patch_w * t.patch_h;
    for (int plane = blockIdx.y; plane < a.n * a.c; plane += gridDim.y) {
        __syncthreads();  // the previous plane's pixels are done with the patch
        for (int k = threadIdx.x; k < patch_size; k += blockDim.x)
            upfirdn2d_tile_load<T, float>(a, t, plane, patch, k);
        __syncthreads();
        for (int k = threadIdx.x; k < SG2_TILE_W * SG2_TILE_H; k += blockDim.x)
            upfirdn2d_tile_store<T, float>(a, t, plane, f, patch, k);
    }
}

template <class T> void upfirdn2d_launch(const Upfirdn2dArgs& a, bool tiled) {
    c10::cuda::CUDAGuard guard(a.device_index);
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream(a.device_index);
    const int threads = 256;
    if (tiled) {
        const size_t smem = sizeof(float) * (a.f_h * a.f_w + upfirdn2d_patch_w(a) * upfirdn2d_patch_h(a));
        const int planes = a.n * a.c;
        dim3 grid(upfirdn2d_tiles_x(a) * upfirdn2d_tiles_y(a), planes < 65535 ? planes : 65535);
        upfirdn2d_tiled_kernel<T><<<grid, threads, smem, stream>>>(a);
    } else {
        const int64_t size = int64_t(a.n) * a.c * a.out_h * a.out_w;
        const int64_t blocks = (size + threads - 1) / threads;
        const int grid = int(blocks < (1 << 20) ? blocks : (1 << 20));
        upfirdn2d_generic_kernel<T><<<grid, threads, 0, stream>>>(a, size);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template void upfirdn2d_launch<float>(const Upfirdn2dArgs&, bool);
template void upfirdn2d_launch<double>(const Upfirdn2dArgs&, bool);
template void upfirdn2d_launch<c10::Half>(const Upfirdn2dArgs&, bool);
template void upfirdn2d_launch<c10::BFloat16>(const Upfirdn2dArgs&, bool);
