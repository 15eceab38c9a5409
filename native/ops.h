// The tensor operations JS needs directly (tests, loaders, exporters); model math stays native.
#pragma once

#include <napi.h>

namespace mlxq {

void init_ops(Napi::Env env, Napi::Object exports);

}  // namespace mlxq
