// Included first by every file that does the encoders' float math: llama.cpp's reference
// quantizers round after every operation, so a fused multiply-add (allowed by default on arm64 and
// with -march flags that enable FMA) would change the bits of scales and quants.
#pragma once

#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
