// bias_act kernel: per-element arithmetic, shared by bias_act_kernel.cu and the CPU test build.
#pragma once

#include "kernel_common.h"

// Activation ids, as in ACTIVATIONS[...].kernel_id of bias_act.py.
enum SG2Act { kLinear = 1, kRelu, kLrelu, kTanh, kSigmoid, kElu, kSelu, kSoftplus, kSwish };

// Modes: 0 forward, 1 first derivative, 2 second derivative (see bias_act.py).
struct BiasActArgs {
    const void* v;     // main operand: x (mode 0), dy (mode 1), upstream gradient (mode 2)
    const void* b;     // bias along the bias dimension, or nullptr
    const void* x;     // layer input, or nullptr (then mode 1 reads the slope from y)
    const void* y;     // layer output, or nullptr (needed for clamping and slope from y)
    const void* d;     // mode 2: the dy that mode 1 was called with
    void* out;         // same shape and strides as v
    int64_t size;      // number of elements of v
    int64_t step_dim;  // stride of the bias dimension, in elements
    int64_t size_dim;  // length of the bias dimension
    int mode, act;
    double alpha, gain, clamp;
    int device_index;  // CUDA device of the operands (unused on the CPU)
};

// f(x).
template <class A> SG2_HD A act_value(int act, A x, A alpha) {
    const A selu_scale = A(1.0507009873554804934193349852946);
    const A selu_alpha = A(1.6732632423543772848170429916717);
    switch (act) {
    case kRelu: return x < A(0) ? A(0) : x;  // written so that NaN passes through
    case kLrelu: return x < A(0) ? x * alpha : x;
    case kTanh: return sg2_tanh(x);
    case kSigmoid: return A(1) / (A(1) + sg2_exp(-x));
    case kElu: return x > A(0) ? x : sg2_expm1(x);
    case kSelu: return x > A(0) ? selu_scale * x : selu_scale * selu_alpha * sg2_expm1(x);
    case kSoftplus: return x > A(20) ? x : sg2_log1p(sg2_exp(x));  // PyTorch's threshold
    case kSwish: return x / (A(1) + sg2_exp(-x));
    default: return x;  // kLinear
    }
}

// f'(x).
template <class A> SG2_HD A act_slope(int act, A x, A alpha) {
    const A selu_scale = A(1.0507009873554804934193349852946);
    const A selu_alpha = A(1.6732632423543772848170429916717);
    A s = A(1) / (A(1) + sg2_exp(-x));  // sigmoid, shared by several
    switch (act) {
    case kRelu: return x > A(0) ? A(1) : A(0);
    case kLrelu: return x > A(0) ? A(1) : alpha;
    case kTanh: { A t = sg2_tanh(x); return A(1) - t * t; }
    case kSigmoid: return s * (A(1) - s);
    case kElu: return x > A(0) ? A(1) : sg2_exp(x);
    case kSelu: return x > A(0) ? selu_scale : selu_scale * selu_alpha * sg2_exp(x);
    case kSoftplus: return x > A(20) ? A(1) : s;
    case kSwish: return s * (A(1) + x * (A(1) - s));
    default: return A(1);
    }
}

// f''(x); zero for the piecewise linear activations.
template <class A> SG2_HD A act_curvature(int act, A x, A alpha) {
    const A selu_scale = A(1.0507009873554804934193349852946);
    const A selu_alpha = A(1.6732632423543772848170429916717);
    A s = A(1) / (A(1) + sg2_exp(-x));
    switch (act) {
    case kTanh: { A t = sg2_tanh(x); return A(-2) * t * (A(1) - t * t); }
    case kSigmoid: return s * (A(1) - s) * (A(1) - A(2) * s);
    case kElu: return x > A(0) ? A(0) : sg2_exp(x);
    case kSelu: return x > A(0) ? A(0) : selu_scale * selu_alpha * sg2_exp(x);
    case kSoftplus: return x > A(20) ? A(0) : s * (A(1) - s);
    case kSwish: return s * (A(1) - s) * (A(2) + x * (A(1) - A(2) * s));
    default: return A(0);
    }
}

// Slope of a piecewise linear activation read from the sign of its output y = gain * f(x)
// (valid for gain > 0 and alpha >= 0; bias_act.py passes x otherwise).
template <class A> SG2_HD A act_slope_from_y(int act, A y, A alpha) {
    if (act == kLinear) return A(1);
    return y > A(0) ? A(1) : (act == kLrelu ? alpha : A(0));
}

// Element i of the output.
template <class T, class A> SG2_HD void bias_act_one(const BiasActArgs& a, int64_t i) {
    const A alpha = A(a.alpha), gain = A(a.gain), clamp = A(a.clamp);
    A v = static_cast<A>(static_cast<const T*>(a.v)[i]);
    A b = A(0);
    if (a.b) b = static_cast<A>(static_cast<const T*>(a.b)[(i / a.step_dim) % a.size_dim]);
    A r;
    if (a.mode == 0) {
        r = act_value<A>(a.act, v + b, alpha) * gain;
        if (clamp >= A(0)) r = r < -clamp ? -clamp : (r > clamp ? clamp : r);
    } else {
        A x = a.x ? static_cast<A>(static_cast<const T*>(a.x)[i]) + b : A(0);
        A y = a.y ? static_cast<A>(static_cast<const T*>(a.y)[i]) : A(0);
        if (a.mode == 1)
            r = v * gain * (a.x ? act_slope<A>(a.act, x, alpha) : act_slope_from_y<A>(a.act, y, alpha));
        else
            r = v * static_cast<A>(static_cast<const T*>(a.d)[i]) * gain * act_curvature<A>(a.act, x, alpha);
        if (clamp >= A(0) && !(sg2_abs(y) < clamp)) r = A(0);  // clamped outputs pass no gradient
    }
    static_cast<T*>(a.out)[i] = static_cast<T>(r);
}

// Runs bias_act_one for every element: on the GPU in bias_act_kernel.cu, on the CPU in tests.
template <class T> void bias_act_launch(const BiasActArgs& a);
