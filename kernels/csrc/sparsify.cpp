// CPU fast path of stochastic activation-gradient pruning (Ye et al., arXiv:1908.00173).
//
// prune_grad(g, tau, seed): where |g| < tau the element becomes sign(g) * tau with probability
// |g| / tau and 0 otherwise (unbiased: E = g); elements with |g| >= tau pass unchanged.
//
// Random numbers are counter-based: u(i) = hash(seed, i) in [0, 1), so the result depends only on
// (seed, element index), never on the thread count or the schedule. The hash is two rounds of the
// murmur3 32-bit finaliser (32-bit multiplies vectorise on AVX2, 64-bit ones do not). The index's
// high 32 bits are folded into the per-block key, so tensors beyond 2^32 elements stay distinct.
// Keys and hash: `sparsify_keys` / `sparsify_hash` in kernels/_common/random.h.

#include <ATen/ATen.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>

#include "random.h"  // kernels/_common: the hash shared with the Triton path

namespace {

constexpr int64_t kBlock = 4096;  // elements per OpenMP work item; divides 2^32, so a block never
                                  // straddles a change of the index's high word

// One block of the branch-free kernel: a plain `omp simd` loop over floats with a 32-bit counter,
// so every lane is a 32-bit integer or float (8 lanes per AVX2 vector, 16 per AVX-512).
inline void prune_block(const float* __restrict in, float* __restrict out, uint32_t len, uint32_t lo0, float tau,
                        uint32_t key0, uint32_t key1) {
#pragma omp simd
  for (uint32_t j = 0; j < len; ++j) {
    const uint32_t h = effitrain_random::sparsify_hash(lo0 + j, key0, key1);
    const float u = effitrain_random::uniform24(h);  // top 24 hash bits -> [0, 1)
    const float x = in[j];
    const float a = std::fabs(x);
    const float kept = (u * tau < a) ? std::copysign(tau, x) : 0.0f;  // P(kept) = |x| / tau
    out[j] = (a < tau) ? kept : x;
  }
}

at::Tensor prune_grad(const at::Tensor& g, const at::Tensor& tau, int64_t seed) {
  TORCH_CHECK(g.device().is_cpu(), "prune_grad (C++): g must be a CPU tensor, got ", g.device());
  TORCH_CHECK(g.scalar_type() == at::kFloat, "prune_grad (C++): g must be float32, got ", g.scalar_type());
  TORCH_CHECK(tau.numel() == 1, "prune_grad (C++): tau must have one element, got ", tau.numel());
  const at::Tensor src = g.contiguous();
  at::Tensor out = at::empty_like(src);
  const float t = tau.to(at::kCPU).to(at::kFloat).item<float>();
  const int64_t n = src.numel();
  const float* in = src.const_data_ptr<float>();
  float* dst = out.mutable_data_ptr<float>();
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t begin = b * kBlock;
    const int64_t end = begin + kBlock < n ? begin + kBlock : n;
    const uint32_t high = static_cast<uint32_t>(static_cast<uint64_t>(begin) >> 32);
    const effitrain_random::Keys keys = effitrain_random::sparsify_keys(seed, high);
    prune_block(in + begin, dst + begin, static_cast<uint32_t>(end - begin), static_cast<uint32_t>(begin), t, keys.k1,
                keys.k2);
  }
  return out.view(g.sizes());
}

}  // namespace

TORCH_LIBRARY(effitrain_sparsify, m) {
  m.def("prune_grad(Tensor g, Tensor tau, int seed) -> Tensor");
  m.impl("prune_grad", c10::DispatchKey::CPU, TORCH_FN(prune_grad));
}
