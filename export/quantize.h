#pragma once
// Post-training int8 weight quantization, calibrated from the weights alone.
#include <cstdint>
#include <span>
#include <vector>

namespace dtrain {

// Symmetric per-output-channel int8 of a row-major [channels, per_channel] matrix:
// scale_c = max_j |w_cj| / 127 (1 for an all-zero row), q_cj = round_half_even(w_cj / scale_c)
// clamped to [-127, 127]; the weight is read back as q_cj * scale_c (ONNX DequantizeLinear with
// a zero point of 0).
struct QuantizedInt8 {
  std::vector<int8_t> values;  // [channels, per_channel]
  std::vector<float> scales;   // [channels]
};
QuantizedInt8 quantize_int8_per_channel(std::span<const float> w, int64_t channels);

}  // namespace dtrain
