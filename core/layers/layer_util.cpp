#include "core/layers/layer_util.h"

#include <cmath>

namespace dtrain::layers {

void check_input(const Tensor& x, const std::string& layer, DType dtype) {
  DTRAIN_CHECK(x.defined(), layer, ": undefined input");
  DTRAIN_CHECK(x.dtype() == dtype, layer, ": input has dtype ", dtype_name(x.dtype()), ", expected ",
               dtype_name(dtype));
  DTRAIN_CHECK(x.is_contiguous(), layer, ": input ", x.shape().str(), " is not contiguous");
}

void check_param(const Tensor& x, const Parameter* p, const std::string& layer) {
  DTRAIN_CHECK(p != nullptr && p->value.defined(), layer,
               ": parameters are not allocated (register_parameters and ParameterArena::allocate first)");
  DTRAIN_CHECK(p->value.device() == x.device(), layer, ": input is on ", x.device().str(), ", parameter '", p->name,
               "' on ", p->value.device().str());
}

void check_grad(const Tensor& dy, const Shape& expected, const std::string& layer) {
  check_input(dy, layer + " backward");
  DTRAIN_CHECK(dy.shape() == expected, layer, ": output gradient has shape ", dy.shape().str(), ", expected ",
               expected.str());
}

void check_ids(const Tensor& ids, int64_t vocab, const std::string& layer) {
  const std::vector<int64_t> host = ids.to_vector<int64_t>();
  for (size_t i = 0; i < host.size(); ++i)
    DTRAIN_CHECK(host[i] >= 0 && host[i] < vocab, layer, ": id ", host[i], " at position ", i, " is out of range [0, ",
                 vocab, ")");
}

void check_forwarded(bool forwarded, const std::string& layer) {
  DTRAIN_CHECK(forwarded, layer, ": backward called before forward");
}

Tensor& workspace(Tensor& buf, const Shape& shape, Device device, DType dtype) {
  const bool reusable = buf.defined() && buf.shape() == shape && buf.dtype() == dtype && buf.device() == device &&
                        buf.storage().use_count() == 1;
  if (!reusable) buf = Tensor::empty(shape, dtype, device);
  return buf;
}

std::function<void(Tensor&, Generator&)> fan_in_uniform_init(int64_t fan_in) {
  const float bound = fan_in > 0 ? 1.0f / std::sqrt(static_cast<float>(fan_in)) : 0.0f;
  return
      [bound](Tensor& v, Generator& gen) { v.copy_from(Tensor::uniform(v.shape(), -bound, bound, gen, v.device())); };
}

std::function<void(Tensor&, Generator&)> constant_init(float value) {
  return [value](Tensor& v, Generator&) { v.fill(value); };
}

std::function<void(Tensor&, Generator&)> normal_init(float mean, float stddev) {
  return [mean, stddev](Tensor& v, Generator& gen) {
    v.copy_from(Tensor::randn(v.shape(), mean, stddev, gen, v.device()));
  };
}

}  // namespace dtrain::layers
