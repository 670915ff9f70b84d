// upfirdn2d kernel: per-pixel arithmetic and the tiled fast path's index math, shared by
// upfirdn2d_kernel.cu and the CPU test build (tests/cpu_kernels).
#pragma once

#include "kernel_common.h"

struct Upfirdn2dArgs {
    const void* x;  // input [n, c, in_h, in_w], any strides
    const void* f;  // filter [f_h, f_w], contiguous; float (double for double x)
    void* y;        // output [n, c, out_h, out_w]
    int n, c, in_h, in_w, out_h, out_w, f_h, f_w;
    int64_t sx_n, sx_c, sx_h, sx_w;  // input strides, in elements
    int64_t sy_n, sy_c, sy_h, sy_w;  // output strides, in elements
    int up_x, up_y, down_x, down_y, pad_x0, pad_y0;
    bool flip;           // true: correlation, false: convolution (filter flipped)
    bool channel_first;  // enumerate outputs with the channel fastest (channels_last memory)
    double gain;
    int device_index;
};

// Reads input pixels straight from the tensor.
template <class T> struct Upfirdn2dGlobalReader {
    const T* plane;
    int64_t sh, sw;
    SG2_HD T operator()(int iy, int ix) const { return plane[iy * sh + ix * sw]; }
};

// The first input sample under filter tap 0 of output position o, along one axis:
// returns the input index and sets `tap` to the tap that reads it.
SG2_HD int upfirdn2d_first_input(int o, int down, int pad0, int up, int& tap) {
    int k0 = o * down - pad0;  // position of tap 0 in the zero-inserted, padded signal
    int i = (sg2_max(k0, 0) + up - 1) / up;  // first input sample at or after it
    tap = i * up - k0;
    return i;
}

// Output pixel (oy, ox) of one image plane: the sum over the filter taps that land on
// input samples (the inserted zeros and the zero padding contribute nothing).
template <class A, class F, class Reader>
SG2_HD A upfirdn2d_pixel(const Upfirdn2dArgs& a, const F* f, const Reader& in, int oy, int ox) {
    int ty0, tx0;
    const int iy0 = upfirdn2d_first_input(oy, a.down_y, a.pad_y0, a.up_y, ty0);
    const int ix0 = upfirdn2d_first_input(ox, a.down_x, a.pad_x0, a.up_x, tx0);
    A acc = A(0);
    for (int iy = iy0, ty = ty0; ty < a.f_h && iy < a.in_h; iy++, ty += a.up_y) {
        const int fy = a.flip ? ty : a.f_h - 1 - ty;
        for (int ix = ix0, tx = tx0; tx < a.f_w && ix < a.in_w; ix++, tx += a.up_x) {
            const int fx = a.flip ? tx : a.f_w - 1 - tx;
            acc += static_cast<A>(in(iy, ix)) * static_cast<A>(f[fy * a.f_w + fx]);
        }
    }
    return acc * A(a.gain);
}

// Generic path: output element i, in the output's memory order.
template <class T, class A, class F> SG2_HD void upfirdn2d_one(const Upfirdn2dArgs& a, int64_t i) {
    int n, c, oy, ox;
    if (a.channel_first) {
        c = int(i % a.c); i /= a.c;
        ox = int(i % a.out_w); i /= a.out_w;
        oy = int(i % a.out_h); n = int(i / a.out_h);
    } else {
        ox = int(i % a.out_w); i /= a.out_w;
        oy = int(i % a.out_h); i /= a.out_h;
        c = int(i % a.c); n = int(i / a.c);
    }
    Upfirdn2dGlobalReader<T> in{static_cast<const T*>(a.x) + n * a.sx_n + c * a.sx_c, a.sx_h, a.sx_w};
    A v = upfirdn2d_pixel<A, F>(a, static_cast<const F*>(a.f), in, oy, ox);
    static_cast<T*>(a.y)[n * a.sy_n + c * a.sy_c + oy * a.sy_h + ox * a.sy_w] = static_cast<T>(v);
}

// ----------------------------------------------------------------------------
// Tiled path: a block computes a TILE_H x TILE_W patch of output pixels of one plane from an
// input patch staged in shared memory. Only for up, down <= 2 and filters up to 8x8, which
// covers StyleGAN2's resampling and plain filtering.

#define SG2_TILE_W 64
#define SG2_TILE_H 16
#define SG2_TILE_MAX_FILTER 8

SG2_HD bool upfirdn2d_tiled_ok(const Upfirdn2dArgs& a) {
    return a.up_x <= 2 && a.up_y <= 2 && a.down_x <= 2 && a.down_y <= 2 &&
           a.f_w <= SG2_TILE_MAX_FILTER && a.f_h <= SG2_TILE_MAX_FILTER;
}

// Input patch size that covers every sample the tile's pixels read (see upfirdn2d_pixel:
// output o reads inputs floor_div(o*down - pad0, up) .. floor_div(o*down - pad0 + f - 1, up)).
SG2_HD int upfirdn2d_patch_w(const Upfirdn2dArgs& a) { return ((SG2_TILE_W - 1) * a.down_x + a.f_w - 1) / a.up_x + 2; }
SG2_HD int upfirdn2d_patch_h(const Upfirdn2dArgs& a) { return ((SG2_TILE_H - 1) * a.down_y + a.f_h - 1) / a.up_y + 2; }
SG2_HD int upfirdn2d_tiles_x(const Upfirdn2dArgs& a) { return (a.out_w + SG2_TILE_W - 1) / SG2_TILE_W; }
SG2_HD int upfirdn2d_tiles_y(const Upfirdn2dArgs& a) { return (a.out_h + SG2_TILE_H - 1) / SG2_TILE_H; }

struct Upfirdn2dTile {
    int ox0, oy0;  // first output pixel of the tile
    int ix0, iy0;  // input sample stored at patch[0][0]
    int patch_w, patch_h;
};

SG2_HD Upfirdn2dTile upfirdn2d_tile(const Upfirdn2dArgs& a, int tile_index) {
    Upfirdn2dTile t;
    const int tiles_x = upfirdn2d_tiles_x(a);
    t.ox0 = (tile_index % tiles_x) * SG2_TILE_W;
    t.oy0 = (tile_index / tiles_x) * SG2_TILE_H;
    t.ix0 = sg2_floor_div(t.ox0 * a.down_x - a.pad_x0, a.up_x);
    t.iy0 = sg2_floor_div(t.oy0 * a.down_y - a.pad_y0, a.up_y);
    t.patch_w = upfirdn2d_patch_w(a);
    t.patch_h = upfirdn2d_patch_h(a);
    return t;
}

// Reads input pixels from the staged patch.
template <class A> struct Upfirdn2dPatchReader {
    const A* patch;
    Upfirdn2dTile t;
    SG2_HD A operator()(int iy, int ix) const {
#if defined(SG2_CPU_TEST) && !defined(__CUDA_ARCH__)
        if (iy < t.iy0 || iy >= t.iy0 + t.patch_h || ix < t.ix0 || ix >= t.ix0 + t.patch_w)
            throw std::runtime_error("upfirdn2d tiled path: read outside the staged patch");
#endif
        return patch[(iy - t.iy0) * t.patch_w + (ix - t.ix0)];
    }
};

// Step 1, work item k of patch_w * patch_h: stage one input sample (zero outside the image).
template <class T, class A>
SG2_HD void upfirdn2d_tile_load(const Upfirdn2dArgs& a, const Upfirdn2dTile& t, int plane, A* patch, int k) {
    const int iy = t.iy0 + k / t.patch_w, ix = t.ix0 + k % t.patch_w;
    const int n = plane / a.c, c = plane % a.c;
    A v = A(0);
    if (0 <= iy && iy < a.in_h && 0 <= ix && ix < a.in_w)
        v = static_cast<A>(static_cast<const T*>(a.x)[n * a.sx_n + c * a.sx_c + iy * a.sx_h + ix * a.sx_w]);
    patch[k] = v;
}

// Step 2, work item k of TILE_W * TILE_H: compute one output pixel from the patch.
template <class T, class A>
SG2_HD void upfirdn2d_tile_store(const Upfirdn2dArgs& a, const Upfirdn2dTile& t, int plane, const A* f, const A* patch, int k) {
    const int oy = t.oy0 + k / SG2_TILE_W, ox = t.ox0 + k % SG2_TILE_W;
    if (oy >= a.out_h || ox >= a.out_w) return;
    const int n = plane / a.c, c = plane % a.c;
    Upfirdn2dPatchReader<A> in{patch, t};
    A v = upfirdn2d_pixel<A, A>(a, f, in, oy, ox);
    static_cast<T*>(a.y)[n * a.sy_n + c * a.sy_c + oy * a.sy_h + ox * a.sy_w] = static_cast<T>(v);
}

// Runs the op: on the GPU in upfirdn2d_kernel.cu, on the CPU in tests.
template <class T> void upfirdn2d_launch(const Upfirdn2dArgs& a, bool tiled);
