#pragma once
// The inference engine's CPU convolution: a direct stride-1 convolution with AVX-512, used by the
// ONNX engine for CPU Convs where it beats im2col + GEMM (inference/onnx_engine.cpp decides).
#include <cstdint>

namespace dtrain::inference {

// Available when the CPU has AVX-512 and oc % 16 == 0. conv2d_direct_pack reorders w [oc, c, k, k]
// into wpack [oc / V, c, k, k, V] (V = 32 when oc allows, else 16; same size as w); conv2d_direct
// writes one sample's y [oc, oh, ow] (no bias) from x [c, h, w] with `pad` zeros around, `padded`
// being scratch of c * (h + 2 pad) * (w + 2 pad).
bool conv2d_direct_available(int64_t oc, int64_t stride);
void conv2d_direct_pack(const float* w, float* wpack, int64_t oc, int64_t c, int64_t k);
void conv2d_direct(const float* x, const float* wpack, float* y, float* padded, int64_t c, int64_t h, int64_t wd,
                   int64_t oc, int64_t k, int64_t pad);

}  // namespace dtrain::inference
