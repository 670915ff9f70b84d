// Test-only CPU build of the upfirdn2d extension: the real binding (upfirdn2d_kernel.cpp) and
// the real per-pixel and tile arithmetic (upfirdn2d_kernel.h). The tiled path is emulated
// block by block (stage the patch, then compute the tile), as the CUDA kernel does with
// shared memory, so CI also checks the tiles' index math; reads outside a staged patch throw.

#include <limits>
#include <stdexcept>
#include <vector>

#define SG2_CPU_TEST
#include "../../torch_utils/ops/upfirdn2d_kernel.cpp"

template <class T> void upfirdn2d_launch(const Upfirdn2dArgs& a, bool tiled) {
    using A = typename SG2Acc<T>::type;
    if (!tiled) {
        const int64_t size = int64_t(a.n) * a.c * a.out_h * a.out_w;
        for (int64_t i = 0; i < size; i++)
            upfirdn2d_one<T, A, A>(a, i);
        return;
    }
    const float* f_src = static_cast<const float*>(a.f);
    std::vector<float> f(f_src, f_src + a.f_h * a.f_w);
    const int tiles = upfirdn2d_tiles_x(a) * upfirdn2d_tiles_y(a);
    for (int tile = 0; tile < tiles; tile++) {
        const Upfirdn2dTile t = upfirdn2d_tile(a, tile);
        std::vector<float> patch(t.patch_w * t.patch_h, std::numeric_limits<float>::quiet_NaN());
        for (int plane = 0; plane < a.n * a.c; plane++) {
            for (int k = 0; k < t.patch_w * t.patch_h; k++)
                upfirdn2d_tile_load<T, float>(a, t, plane, patch.data(), k);
            for (int k = 0; k < SG2_TILE_W * SG2_TILE_H; k++)
                upfirdn2d_tile_store<T, float>(a, t, plane, f.data(), patch.data(), k);
        }
    }
}
