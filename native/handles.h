// RAII owners for mlx-c handles: one *_new needs exactly one *_free, on every path.
#pragma once

#include <mlx/c/mlx.h>

#include <utility>

namespace mlxq {

template <typename T, int (*Free)(T)>
class Handle {
 public:
  Handle() : h_{} {}
  explicit Handle(T h) : h_(h) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& other) noexcept : h_(std::exchange(other.h_, T{})) {}
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) {
      reset();
      h_ = std::exchange(other.h_, T{});
    }
    return *this;
  }
  ~Handle() { reset(); }

  void reset() {
    if (h_.ctx != nullptr) Free(h_);
    h_ = T{};
  }
  /** For mlx-c output parameters: any handle held is released by mlx-c when it writes. */
  T* out() { return &h_; }
  const T& get() const { return h_; }
  bool empty() const { return h_.ctx == nullptr; }

 private:
  T h_;
};

using Array = Handle<mlx_array, mlx_array_free>;
using VectorArray = Handle<mlx_vector_array, mlx_vector_array_free>;
using MapStringToArray = Handle<mlx_map_string_to_array, mlx_map_string_to_array_free>;
using MapStringToString = Handle<mlx_map_string_to_string, mlx_map_string_to_string_free>;
using MapStringToArrayIterator = Handle<mlx_map_string_to_array_iterator, mlx_map_string_to_array_iterator_free>;
using MapStringToStringIterator = Handle<mlx_map_string_to_string_iterator, mlx_map_string_to_string_iterator_free>;
using Stream = Handle<mlx_stream, mlx_stream_free>;
using Device = Handle<mlx_device, mlx_device_free>;
using DeviceInfo = Handle<mlx_device_info, mlx_device_info_free>;
using String = Handle<mlx_string, mlx_string_free>;
using VectorString = Handle<mlx_vector_string, mlx_vector_string_free>;
using Closure = Handle<mlx_closure, mlx_closure_free>;
using ClosureValueAndGrad = Handle<mlx_closure_value_and_grad, mlx_closure_value_and_grad_free>;
using ClosureCustom = Handle<mlx_closure_custom, mlx_closure_custom_free>;

}  // namespace mlxq
