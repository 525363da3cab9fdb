#pragma once
// DTRAIN_DISPATCH(device, kernel, args...): calls cpu::kernel or cuda::kernel by device.
// For core's own .cpp files (ops, layers, losses); users call core/ops.h.
#include "core/kernels.h"

#if DTRAIN_HAVE_CUDA
#define DTRAIN_DISPATCH(dev, fn, ...) \
  ((dev).is_cuda() ? ::dtrain::cuda::fn(__VA_ARGS__) : ::dtrain::cpu::fn(__VA_ARGS__))
#else
#define DTRAIN_DISPATCH(dev, fn, ...) ((void)(dev), ::dtrain::cpu::fn(__VA_ARGS__))
#endif
