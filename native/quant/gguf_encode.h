// ggufEncode and ggufTranscode: a dense tensor, or a tensor's bytes in a file, as the bytes of a GGUF
// tensor type (F32, F16, BF16, Q4_0 … Q6_K), byte-identical to llama.cpp's reference quantizers.
#pragma once

#include <napi.h>

namespace mlxq {

void init_gguf_encode(Napi::Env env, Napi::Object exports);

}  // namespace mlxq
