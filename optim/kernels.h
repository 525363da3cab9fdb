#pragma once
// Declares the optimizers' update kernels (optim/kernel_list.inc) for each backend; core/dispatch.h's
// DTRAIN_DISPATCH picks one by the arena's device.
#include <cstdint>

#include "core/config.h"

namespace dtrain::cpu {
#include "optim/kernel_list.inc"
}  // namespace dtrain::cpu

#if DTRAIN_HAVE_CUDA
namespace dtrain::cuda {
#include "optim/kernel_list.inc"
}  // namespace dtrain::cuda
#endif
