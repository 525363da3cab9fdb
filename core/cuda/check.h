#pragma once
// Return-code checks for the CUDA runtime and cuBLAS, each naming the failed call, plus the
// compute stream that every kernel launches on.
#include <cuda_runtime_api.h>

#include "core/error.h"

#define DTRAIN_CUDA_CHECK(call)                                                                                       \
  do {                                                                                                                \
    cudaError_t dtrain_err_ = (call);                                                                                 \
    if (dtrain_err_ != cudaSuccess)                                                                                   \
      ::dtrain::fail("CUDA error in ", #call, " (", __FILE__, ":", __LINE__, "): ", cudaGetErrorString(dtrain_err_)); \
  } while (0)

#define DTRAIN_CUBLAS_CHECK(call)                                                                     \
  do {                                                                                                \
    int dtrain_st_ = static_cast<int>(call);                                                          \
    if (dtrain_st_ != 0)                                                                              \
      ::dtrain::fail("cuBLAS error ", dtrain_st_, " in ", #call, " (", __FILE__, ":", __LINE__, ")"); \
  } while (0)

namespace dtrain::cuda {
// The calling thread's compute stream for `device`: its gpu::StreamScope's, else the device's
// shared one (created on first use, non-blocking).
cudaStream_t compute_stream(int device);
int current_device();
// The compute stream of the current device.
inline cudaStream_t current_stream() { return compute_stream(current_device()); }
}  // namespace dtrain::cuda
