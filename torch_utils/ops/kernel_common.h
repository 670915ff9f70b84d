// Helpers shared by the kernels of torch_utils/ops and by their CPU test build.
//
// Each kernel's per-element work is a SG2_HD function: __host__ __device__ under nvcc,
// a plain inline function under a C++ compiler, so tests/cpu_kernels can run exactly the
// same arithmetic on the CPU and compare it with the PyTorch reference.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define SG2_HD __host__ __device__ __forceinline__
#else
#define SG2_HD inline
#endif

// Accumulation type: float for float/half/bfloat16, double for double.
template <class T> struct SG2Acc { using type = float; };
template <> struct SG2Acc<double> { using type = double; };

// Math overloads that name the float and double versions explicitly, so device code never
// silently promotes float arithmetic to double.
SG2_HD float sg2_exp(float v) { return expf(v); }
SG2_HD double sg2_exp(double v) { return exp(v); }
SG2_HD float sg2_expm1(float v) { return expm1f(v); }
SG2_HD double sg2_expm1(double v) { return expm1(v); }
SG2_HD float sg2_log1p(float v) { return log1pf(v); }
SG2_HD double sg2_log1p(double v) { return log1p(v); }
SG2_HD float sg2_tanh(float v) { return tanhf(v); }
SG2_HD double sg2_tanh(double v) { return tanh(v); }
SG2_HD float sg2_abs(float v) { return fabsf(v); }
SG2_HD double sg2_abs(double v) { return fabs(v); }

// Integer division rounding towards minus infinity (C++ rounds towards zero).
SG2_HD int sg2_floor_div(int a, int b) { return (a >= 0) ? a / b : -((-a + b - 1) / b); }
SG2_HD int sg2_max(int a, int b) { return a > b ? a : b; }
