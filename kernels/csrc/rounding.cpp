// CPU fast paths for kernels/rounding.py: fixed-point rounding (nearest or stochastic) and
// stochastic rounding of fp32 to fp16 / bf16.
//
// Layout: OpenMP parallel-for over chunks of CHUNK elements; inside a chunk a branch-free loop
// the compiler vectorises (-O3 -march=native). Random numbers come from a counter-based hash of
// (seed, element index) -- one murmur3 32-bit finaliser of a Weyl step keyed by the seed (one round
// rather than two: 0.52 -> 0.75 of copy bandwidth with 512-bit vectors, `effitrain bench kernels`),
// `rounding_keys` / `rounding_hash` in kernels/_common/random.h --
// so the result depends only on the seed, never on the thread count or the chunking.
// Specification of every op: the *_reference functions in kernels/rounding.py.

#include <ATen/ATen.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "random.h"  // kernels/_common: the hash shared with the Triton path

namespace {

using effitrain_random::Keys;
using effitrain_random::rounding_hash;
using effitrain_random::rounding_keys;
using effitrain_random::uniform24;

constexpr int64_t CHUNK = 1 << 16;  // elements per OpenMP work item (256 KiB of fp32)

// floor for |y| < 2^31 through an int conversion: GCC does not vectorise std::floor/std::ceil
// under the default -ftrapping-math, but does vectorise this (callers pass non-NaN y).
inline float floor_small(float y) {
  const float t = static_cast<float>(static_cast<int32_t>(y));
  return t > y ? t - 1.0f : t;
}

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

void check_input(const at::Tensor& x, const char* op) {
  TORCH_CHECK(x.device().is_cpu(), op, ": expected a CPU tensor, got ", x.device());
  TORCH_CHECK(x.scalar_type() == at::kFloat, op, ": expected float32 input, got ", x.scalar_type());
}

// Run body(begin, end, keys) over [0, n) in chunks; chunks never straddle a 2^32 boundary.
// Parallel only from PARALLEL_CHUNKS chunks up: a parallel region on a small tensor costs more than
// it saves, and much more when the cores are oversubscribed. The team size is OpenMP's default,
// which torch.set_num_threads sets (torch and this library share libgomp).
constexpr int64_t PARALLEL_CHUNKS = 8;

template <typename Body>
void for_chunks(int64_t n, int64_t seed, Body body) {
  const int64_t chunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) if (chunks >= PARALLEL_CHUNKS)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * CHUNK;
    const int64_t end = begin + CHUNK < n ? begin + CHUNK : n;
    body(begin, end, rounding_keys(seed, begin));
  }
}

// Round to the signed fixed-point grid <il, fl>: step 2^-fl, values in [-2^(il-1), 2^(il-1) - 2^-fl].
// Work in grid units y = x * 2^fl (exact), saturate, then floor(y) + [u < y - floor(y)] (stochastic)
// or ceil(y - 1/2) (nearest, ties toward -inf as in the paper's Eq. 1). NaN stays NaN.
// Writes into `out` (fp32, contiguous, same number of elements; it may be `x` itself).
void round_fixed_out(const at::Tensor& x_in, int64_t il, int64_t fl, bool stochastic, int64_t seed, at::Tensor out) {
  check_input(x_in, "round_fixed");
  TORCH_CHECK(il >= 1 && fl >= 0 && il + fl <= 24, "round_fixed: need il >= 1, fl >= 0, il + fl <= 24; got il=",
              il, ", fl=", fl);
  TORCH_CHECK(out.scalar_type() == at::kFloat && out.is_contiguous() && out.numel() == x_in.numel() &&
                  out.device().is_cpu(), "round_fixed_out: out must be a contiguous float32 CPU tensor of ",
              x_in.numel(), " elements");
  const at::Tensor x = x_in.contiguous();
  const float* src = x.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  const float scale = std::ldexp(1.0f, static_cast<int>(fl));
  const float inv_scale = std::ldexp(1.0f, -static_cast<int>(fl));
  const float lo = -std::ldexp(1.0f, static_cast<int>(il + fl - 1));  // grid units
  const float hi = std::ldexp(1.0f, static_cast<int>(il + fl - 1)) - 1.0f;
  for_chunks(x.numel(), seed, [=](int64_t begin, int64_t end, Keys keys) {
    const float* __restrict in = src;
    float* __restrict o = dst;
    if (stochastic) {
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) {
        const float x = in[i];
        const bool nan = (float_bits(x) & 0x7FFFFFFFu) > 0x7F800000u;  // integer test: vectorises
        float y = nan ? 0.0f : x * scale;
        y = y < lo ? lo : (y > hi ? hi : y);
        const float f = floor_small(y);
        const float u = uniform24(rounding_hash(static_cast<uint32_t>(i), keys));
        const float q = (f + (u < y - f ? 1.0f : 0.0f)) * inv_scale;
        o[i] = nan ? x : q;
      }
    } else {
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) {
        const float x = in[i];
        const bool nan = (float_bits(x) & 0x7FFFFFFFu) > 0x7F800000u;
        float y = nan ? 0.0f : x * scale;
        y = y < lo ? lo : (y > hi ? hi : y);
        const float q = (-floor_small(0.5f - y) + 0.0f) * inv_scale;  // ceil(y - 1/2) (+0 for zero)
        o[i] = nan ? x : q;
      }
    }
  });
}

at::Tensor round_fixed(const at::Tensor& x, int64_t il, int64_t fl, bool stochastic, int64_t seed) {
  at::Tensor out = at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous));
  round_fixed_out(x, il, fl, stochastic, seed, out);
  return out;
}

// fp32 -> bf16, stochastic: add 16 random bits below the kept mantissa, truncate. Unbiased
// between the two neighbours; past the largest finite bf16 the next neighbour is inf (2^128).
at::Tensor stochastic_round_bf16(const at::Tensor& x_in, int64_t seed) {
  check_input(x_in, "stochastic_round_bf16");
  const at::Tensor x = x_in.contiguous();
  at::Tensor out = at::empty(x.sizes(), x.options().dtype(at::kBFloat16));
  const float* src = x.data_ptr<float>();
  auto* dst = reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>());
  for_chunks(x.numel(), seed, [=](int64_t begin, int64_t end, Keys keys) {
    const float* __restrict in = src;
    uint16_t* __restrict o = dst;
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const uint32_t bits = float_bits(in[i]);
      const uint32_t r = rounding_hash(static_cast<uint32_t>(i), keys) >> 16;
      const bool nan = (bits & 0x7FFFFFFFu) > 0x7F800000u;
      const uint32_t rounded = (bits + r) >> 16;
      o[i] = static_cast<uint16_t>(nan ? ((bits >> 16) | 0x0040u) : rounded);  // quiet NaN kept
    }
  });
  return out;
}

// fp32 -> fp16, stochastic. Normal range (|x| >= 2^-14): add 13 random bits below the kept
// mantissa and truncate, then rebuild the fp16 bits; a result >= 2^16 is inf (the neighbour past
// 65504 is 65536, which fp16 cannot hold). Subnormal range: fixed point with step 2^-24.
at::Tensor stochastic_round_fp16(const at::Tensor& x_in, int64_t seed) {
  check_input(x_in, "stochastic_round_fp16");
  const at::Tensor x = x_in.contiguous();
  at::Tensor out = at::empty(x.sizes(), x.options().dtype(at::kHalf));
  const float* src = x.data_ptr<float>();
  auto* dst = reinterpret_cast<uint16_t*>(out.data_ptr<at::Half>());
  for_chunks(x.numel(), seed, [=](int64_t begin, int64_t end, Keys keys) {
    const float* __restrict in = src;
    uint16_t* __restrict o = dst;
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const uint32_t bits = float_bits(in[i]);
      const uint32_t sign = (bits >> 16) & 0x8000u;
      const uint32_t mag = bits & 0x7FFFFFFFu;
      const uint32_t h = rounding_hash(static_cast<uint32_t>(i), keys);
      // normal path: 13 dropped mantissa bits
      const uint32_t up = (mag + (h >> 19)) & ~0x1FFFu;
      const uint32_t normal = up >= 0x47800000u ? 0x7C00u : (((up >> 23) - 112u) << 10) | ((up >> 13) & 0x3FFu);
      // subnormal path, in integers (GCC does not vectorise the float version): |x| = m * 2^-sh
      // in units of 2^-24; keep m >> sh and round up iff h < (the dropped bits scaled to 2^32).
      const bool subnormal = mag < 0x38800000u;
      const uint32_t e = (mag >> 23) > 1u ? (mag >> 23) : 1u;  // fp32 subnormals share exponent 1
      const uint32_t m = (mag & 0x7FFFFFu) | ((mag >> 23) ? 0x800000u : 0u);
      const uint32_t sh = subnormal ? 126u - e : 14u;  // >= 14 on subnormal lanes
      const uint32_t whole = sh < 32u ? m >> (sh & 31u) : 0u;
      const uint32_t frac = sh < 32u ? m << ((32u - sh) & 31u) : (sh < 64u ? m >> ((sh - 32u) & 31u) : 0u);
      const uint32_t sub = whole + (h < frac ? 1u : 0u);  // 1024 = 2^-14 is also right
      uint32_t res = subnormal ? sub : normal;
      res = mag > 0x7F800000u ? 0x7E00u : res;  // NaN -> quiet NaN
      o[i] = static_cast<uint16_t>(sign | res);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY(effitrain_rounding, m) {
  m.def("round_fixed(Tensor x, int il, int fl, bool stochastic, int seed) -> Tensor", &round_fixed);
  m.def("round_fixed_out(Tensor x, int il, int fl, bool stochastic, int seed, Tensor(a!) out) -> ()",
        &round_fixed_out);
  m.def("stochastic_round_bf16(Tensor x, int seed) -> Tensor", &stochastic_round_bf16);
  m.def("stochastic_round_fp16(Tensor x, int seed) -> Tensor", &stochastic_round_fp16);
}
