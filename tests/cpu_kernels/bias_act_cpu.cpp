// Test-only CPU build of the bias_act extension: the real binding (bias_act_kernel.cpp) and
// the real per-element arithmetic (bias_act_kernel.h), driven by a plain loop instead of the
// CUDA launch, so CI checks the kernel's results against the PyTorch reference.

#define SG2_CPU_TEST
#include "../../torch_utils/ops/bias_act_kernel.cpp"

template <class T> void bias_act_launch(const BiasActArgs& a) {
    using A = typename SG2Acc<T>::type;
    for (int64_t i = 0; i < a.size; i++)
        bias_act_one<T, A>(a, i);
}
