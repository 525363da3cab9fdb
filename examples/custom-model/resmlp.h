#pragma once
// A residual MLP, registered with dtrain as model.type = resmlp:
//
//   Flatten -> Linear(in, width) -> blocks x [x + Linear(act(Linear(LayerNorm(x))))]
//           -> LayerNorm -> Linear(width, num_classes)
//
// Sizes come from `model.options`: width (default 256) and blocks (default 2), e.g.
// `--model.options=width=128,blocks=3`; `model.activation` (relu | gelu) picks the activation.

namespace resmlp {

// Adds "resmlp" to dtrain's model registry. Call once, before training.
void register_resmlp();

}  // namespace resmlp
