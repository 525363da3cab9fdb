#include "core/arena.h"

namespace dtrain {

Parameter& ParameterArena::add(std::string name, const Shape& shape, std::function<void(Tensor&, Generator&)> init,
                               bool weight_decay) {
  DTRAIN_CHECK(!allocated(), "parameter '", name, "' registered after the arena was allocated");
  for (const Parameter* p : ordered_) DTRAIN_CHECK(p->name != name, "parameter '", name, "' registered twice");
  Parameter& p = storage_.emplace_back();
  p.name = std::move(name);
  p.shape = shape;
  p.index = static_cast<int>(ordered_.size());
  p.init = std::move(init);
  p.weight_decay = weight_decay;
  ordered_.push_back(&p);
  return p;
}

void ParameterArena::allocate(Device device, Generator& gen) {
  DTRAIN_CHECK(!allocated(), "parameter arena allocated twice");
  // Reverse registration order: the last registered parameter (whose gradient backward
  // produces first) sits at offset 0.
  numel_ = 0;
  for (auto it = ordered_.rbegin(); it != ordered_.rend(); ++it) {
    (*it)->offset = numel_;
    numel_ += (*it)->shape.numel();
  }
  values_ = Tensor::zeros(Shape{numel_}, DType::f32, device);
  grads_ = Tensor::zeros(Shape{numel_}, DType::f32, device);
  for (Parameter* p : ordered_) {
    p->value = values_.flat_range(p->offset, p->shape.numel()).view(p->shape);
    p->grad = grads_.flat_range(p->offset, p->shape.numel()).view(p->shape);
    if (p->init) p->init(p->value, gen);
  }
}

Parameter& ParameterArena::find(const std::string& name) {
  for (Parameter* p : ordered_)
    if (p->name == name) return *p;
  fail("no parameter named '", name, "'");
}

std::vector<DecayRange> ParameterArena::decay_ranges() const {
  std::vector<DecayRange> ranges;
  for (auto it = ordered_.rbegin(); it != ordered_.rend(); ++it) {
    const Parameter& p = **it;
    if (!ranges.empty() && ranges.back().weight_decay == p.weight_decay)
      ranges.back().numel += p.shape.numel();
    else
      ranges.push_back({p.offset, p.shape.numel(), p.weight_decay});
  }
  return ranges;
}

void ParameterArena::zero_grad() {
  if (grads_.defined()) grads_.zero();
}

}  // namespace dtrain
