// Column-row sampling (CRS) on the CPU: Adelman & Silberstein, "Faster Neural Network
// Training with Approximate Tensor Operations" (arXiv:1805.08079).
//
// A @ B (M x K times K x N) is approximated by k column-row pairs drawn i.i.d. with
// replacement, pair i with probability p_i = |A[:,i]| |B[i,:]| / sum_j |A[:,j]| |B[j,:]|,
// each drawn pair scaled by 1 / (k p_i) so the estimate is unbiased (Drineas, Kannan &
// Mahoney 2006; the paper's Section 3). Convolution samples input channels the same way
// (the paper's multi-channel extension). One pass computes the norms, the k draws use a
// counter-based hash keyed by (seed, draw index) (`crs_uniform53`, kernels/_common/random.h),
// and the sampled columns/rows/channels are gathered into contiguous buffers that at::mm /
// at::conv2d then consume.
// When k >= K the exact dense op runs (idx = 0..K-1, scale = 1), as in the official code.

#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <tuple>
#include <vector>

#include "random.h"  // kernels/_common: crs_uniform53

namespace {

constexpr int64_t kParallelMin = 1 << 16;  // elements below which a loop stays on one thread

// Draw k indices with probability weights[i] / sum(weights); scale = sum / (k weights[i]).
std::tuple<at::Tensor, at::Tensor> sample_pairs(const std::vector<double>& weights, int64_t k, int64_t seed) {
  const int64_t K = static_cast<int64_t>(weights.size());
  std::vector<double> cdf(K);
  double total = 0.0;
  for (int64_t i = 0; i < K; ++i) cdf[i] = (total += weights[i]);
  auto idx = at::empty({k}, at::kLong);
  auto scale = at::empty({k}, at::kFloat);
  int64_t* ip = idx.data_ptr<int64_t>();
  float* sp = scale.data_ptr<float>();
  int64_t last = K - 1;  // the last index with a nonzero weight, for u rounding up to total
  while (last > 0 && weights[last] == 0.0) --last;
  for (int64_t t = 0; t < k; ++t) {
    double u = effitrain_random::crs_uniform53(static_cast<uint64_t>(seed), static_cast<uint64_t>(t)) * total;
    int64_t i = std::upper_bound(cdf.begin(), cdf.end(), u) - cdf.begin();  // first cdf > u
    i = std::min(i, last);
    ip[t] = i;
    // An all-zero product (total 0) is exactly zero: every drawn pair gets weight 0.
    sp[t] = weights[i] > 0.0 ? static_cast<float>(total / (static_cast<double>(k) * weights[i])) : 0.0f;
  }
  return {idx, scale};
}

// Repeated draws of one pair add up: the same estimate from the u <= k distinct pairs, in
// ascending order (sequential gathers), so the matmul/conv does u/k of the sampled work.
std::tuple<at::Tensor, at::Tensor> merge_draws(const at::Tensor& idx, const at::Tensor& scale, int64_t K) {
  std::vector<float> total(K, 0.0f);
  std::vector<char> drawn(K, 0);
  const int64_t* ip = idx.data_ptr<int64_t>();
  const float* sp = scale.data_ptr<float>();
  int64_t u = 0;
  for (int64_t t = 0; t < idx.size(0); ++t) {
    u += !drawn[ip[t]];
    drawn[ip[t]] = 1;
    total[ip[t]] += sp[t];
  }
  auto uidx = at::empty({u}, at::kLong);
  auto uscale = at::empty({u}, at::kFloat);
  int64_t* uip = uidx.data_ptr<int64_t>();
  float* usp = uscale.data_ptr<float>();
  for (int64_t i = 0, j = 0; i < K; ++i)
    if (drawn[i]) {
      uip[j] = i;
      usp[j++] = total[i];
    }
  return {uidx, uscale};
}

// Per-column sums of squares of a contiguous M x K matrix; threads own blocks of columns.
std::vector<double> col_sumsq(const at::Tensor& a) {
  const int64_t M = a.size(0), K = a.size(1), block = 256;
  const float* ap = a.data_ptr<float>();
  std::vector<float> acc(K, 0.0f);
#pragma omp parallel for schedule(static) if (M * K > kParallelMin)
  for (int64_t j0 = 0; j0 < K; j0 += block) {
    const int64_t j1 = std::min(K, j0 + block);
    float* out = acc.data();
    for (int64_t m = 0; m < M; ++m) {
      const float* row = ap + m * K;
      for (int64_t j = j0; j < j1; ++j) out[j] += row[j] * row[j];
    }
  }
  return std::vector<double>(acc.begin(), acc.end());
}

// Sum of squares over dims {0, 2} of a contiguous P x C x Q tensor, one value per c.
std::vector<double> mid_sumsq(const at::Tensor& x, int64_t P, int64_t C, int64_t Q) {
  const float* xp = x.data_ptr<float>();
  std::vector<double> out(C, 0.0);
#pragma omp parallel for schedule(static) if (P * C * Q > kParallelMin)
  for (int64_t c = 0; c < C; ++c) {
    double s = 0.0;
    for (int64_t p = 0; p < P; ++p) {
      const float* v = xp + (p * C + c) * Q;
      float lane[16] = {0.0f};  // 16 independent sums: vectorises without -ffast-math
      int64_t q = 0;
      for (; q + 16 <= Q; q += 16)
        for (int l = 0; l < 16; ++l) lane[l] += v[q + l] * v[q + l];
      for (; q < Q; ++q) lane[0] += v[q] * v[q];
      for (int l = 0; l < 16; ++l) s += lane[l];
    }
    out[c] = s;
  }
  return out;
}

std::vector<double> norm_products(const std::vector<double>& a_sq, const std::vector<double>& b_sq) {
  std::vector<double> w(a_sq.size());
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::sqrt(a_sq[i]) * std::sqrt(b_sq[i]);
  return w;
}

// dst[p, t, :] = src[p, idx[t], :] * scale[t] for a contiguous P x C x Q src (dst P x k x Q).
at::Tensor gather_mid(const at::Tensor& src, int64_t P, int64_t C, int64_t Q, const at::Tensor& idx,
                      const float* scale) {
  const int64_t k = idx.size(0);
  auto dst = at::empty({P, k, Q}, src.options());
  const float* s = src.data_ptr<float>();
  float* d = dst.data_ptr<float>();
  const int64_t* ip = idx.data_ptr<int64_t>();
#pragma omp parallel for collapse(2) schedule(static) if (P * k * Q > kParallelMin)
  for (int64_t p = 0; p < P; ++p) {
    for (int64_t t = 0; t < k; ++t) {
      const float* from = s + (p * C + ip[t]) * Q;
      float* to = d + (p * k + t) * Q;
      const float f = scale == nullptr ? 1.0f : scale[t];
      for (int64_t q = 0; q < Q; ++q) to[q] = from[q] * f;
    }
  }
  return dst;
}

// dst[p, idx[t], :] = src[p, t, :] * scale[t] into P x C x Q zeros; idx must be distinct
// (merge_draws), so the (p, t) rows are written without races.
at::Tensor scatter_mid(const at::Tensor& src, int64_t P, int64_t C, int64_t Q, const at::Tensor& idx,
                       const float* scale) {
  const int64_t k = idx.size(0);
  auto dst = at::zeros({P, C, Q}, src.options());
  auto srcc = src.contiguous();
  const float* s = srcc.data_ptr<float>();
  float* d = dst.data_ptr<float>();
  const int64_t* ip = idx.data_ptr<int64_t>();
#pragma omp parallel for collapse(2) schedule(static) if (P * k * Q > kParallelMin)
  for (int64_t p = 0; p < P; ++p) {
    for (int64_t t = 0; t < k; ++t) {
      const float f = scale == nullptr ? 1.0f : scale[t];
      const float* from = s + (p * k + t) * Q;
      float* to = d + (p * C + ip[t]) * Q;
      for (int64_t q = 0; q < Q; ++q) to[q] = from[q] * f;
    }
  }
  return dst;
}

void check_float_cpu(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat, "crs: ", name,
              " must be a float32 CPU tensor, got ", t.scalar_type(), " on ", t.device());
}

// ------------------------------------------------------------------ matmul

at::Tensor gather_rows(const at::Tensor& b, const at::Tensor& uidx) {  // b[uidx, :], any strides
  const int64_t K = b.size(0), N = b.size(1), u = uidx.size(0);
  return b.is_contiguous() ? gather_mid(b, 1, K, N, uidx, nullptr).view({u, N}) : b.index_select(0, uidx);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> crs_mm(const at::Tensor& a, const at::Tensor& b, int64_t k,
                                                     int64_t seed) {
  check_float_cpu(a, "a");
  check_float_cpu(b, "b");
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(0), "crs_mm: shapes ", a.sizes(), " and ",
              b.sizes(), " do not multiply");
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  TORCH_CHECK(k >= 1, "crs_mm: k must be >= 1, got ", k);
  if (k >= K) return {at::mm(a, b), at::arange(K, at::kLong), at::ones({K}, at::kFloat)};
  auto ac = a.contiguous();
  std::vector<double> b_sq(K);
  if (b.is_contiguous()) {
    b_sq = mid_sumsq(b, 1, K, N);
  } else {
    auto n = at::linalg_vector_norm(b, 2, {1}).to(at::kDouble).contiguous();
    for (int64_t i = 0; i < K; ++i) b_sq[i] = n.data_ptr<double>()[i] * n.data_ptr<double>()[i];
  }
  auto [idx, scale] = sample_pairs(norm_products(col_sumsq(ac), b_sq), k, seed);
  auto [uidx, uscale] = merge_draws(idx, scale, K);
  const int64_t u = uidx.size(0);
  auto a_s = gather_mid(ac, M, K, 1, uidx, uscale.data_ptr<float>()).view({M, u});
  return {at::mm(a_s, gather_rows(b, uidx)), idx, scale};
}

// Gradients of crs_mm through the sampled pairs only (the paper's "forward sampling": the
// backward matmuls shrink by k/K too). Unneeded gradients come back as empty tensors.
std::tuple<at::Tensor, at::Tensor> crs_mm_backward(const at::Tensor& grad, const at::Tensor& a,
                                                   const at::Tensor& b, const at::Tensor& idx,
                                                   const at::Tensor& scale, bool need_a, bool need_b) {
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  auto g = grad.contiguous();
  auto none = at::empty({0}, a.options());
  if (idx.size(0) == K)  // the dense case: exact gradients
    return {need_a ? at::mm(g, b.t()) : none, need_b ? at::mm(a.t(), g) : none};
  auto [uidx, uscale] = merge_draws(idx, scale, K);
  const int64_t u = uidx.size(0);
  at::Tensor grad_a = none, grad_b = none;
  if (need_a)
    grad_a = scatter_mid(at::mm(g, gather_rows(b, uidx).t()), M, K, 1, uidx, uscale.data_ptr<float>()).view({M, K});
  if (need_b) {
    auto a_s = gather_mid(a.contiguous(), M, K, 1, uidx, uscale.data_ptr<float>()).view({M, u});
    grad_b = scatter_mid(at::mm(a_s.t(), g), 1, K, N, uidx, nullptr).view({K, N});
  }
  return {grad_a, grad_b};
}

// ------------------------------------------------------------------ convolution

std::tuple<at::Tensor, at::Tensor, at::Tensor> crs_conv(const at::Tensor& x, const at::Tensor& w,
                                                       const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                                       at::IntArrayRef padding, at::IntArrayRef dilation, int64_t k,
                                                       int64_t seed) {
  check_float_cpu(x, "x");
  check_float_cpu(w, "weight");
  TORCH_CHECK(x.dim() == 4 && w.dim() == 4 && x.size(1) == w.size(1), "crs_conv: input ", x.sizes(),
              " and weight ", w.sizes(), " do not match (groups=1 only)");
  const int64_t Nb = x.size(0), C = x.size(1), O = w.size(0);
  const int64_t HW = x.size(2) * x.size(3), R = w.size(2) * w.size(3);
  TORCH_CHECK(k >= 1, "crs_conv: k must be >= 1, got ", k);
  if (k >= C)
    return {at::conv2d(x, w, bias, stride, padding, dilation), at::arange(C, at::kLong), at::ones({C}, at::kFloat)};
  auto xc = x.contiguous();
  auto wc = w.contiguous();
  auto [idx, scale] = sample_pairs(norm_products(mid_sumsq(xc, Nb, C, HW), mid_sumsq(wc, O, C, R)), k, seed);
  auto [uidx, uscale] = merge_draws(idx, scale, C);
  const int64_t u = uidx.size(0);
  auto x_s = gather_mid(xc, Nb, C, HW, uidx, uscale.data_ptr<float>()).view({Nb, u, x.size(2), x.size(3)});
  auto w_s = gather_mid(wc, O, C, R, uidx, nullptr).view({O, u, w.size(2), w.size(3)});
  return {at::conv2d(x_s, w_s, bias, stride, padding, dilation), idx, scale};
}

// Gradients of crs_conv through the sampled input channels only; unneeded ones come back empty.
std::tuple<at::Tensor, at::Tensor, at::Tensor> crs_conv_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& w, const at::Tensor& idx, const at::Tensor& scale,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, bool need_x, bool need_w,
    bool need_bias) {
  const int64_t Nb = x.size(0), C = x.size(1), O = w.size(0);
  const int64_t HW = x.size(2) * x.size(3), R = w.size(2) * w.size(3);
  std::array<bool, 3> mask{need_x, need_w, need_bias};
  std::vector<int64_t> bias_sizes{O};
  auto g = grad.contiguous();
  auto none = at::empty({0}, x.options());
  auto defined = [&](const at::Tensor& t) { return t.defined() ? t : none; };
  if (idx.size(0) == C) {
    auto [gx, gw, gb] =
        at::convolution_backward(g, x, w, bias_sizes, stride, padding, dilation, false, {0, 0}, 1, mask);
    return {defined(gx), defined(gw), defined(gb)};
  }
  auto [uidx, uscale] = merge_draws(idx, scale, C);
  const int64_t u = uidx.size(0);
  auto x_s =
      gather_mid(x.contiguous(), Nb, C, HW, uidx, uscale.data_ptr<float>()).view({Nb, u, x.size(2), x.size(3)});
  auto w_s = gather_mid(w.contiguous(), O, C, R, uidx, nullptr).view({O, u, w.size(2), w.size(3)});
  auto [gxs, gws, gb] =
      at::convolution_backward(g, x_s, w_s, bias_sizes, stride, padding, dilation, false, {0, 0}, 1, mask);
  auto gx = need_x ? scatter_mid(gxs, Nb, C, HW, uidx, uscale.data_ptr<float>()).view(x.sizes()) : none;
  auto gw = need_w ? scatter_mid(gws, O, C, R, uidx, nullptr).view(w.sizes()) : none;
  return {gx, gw, defined(gb)};
}

}  // namespace

TORCH_LIBRARY(effitrain_crs, m) {
  m.def("crs_mm(Tensor a, Tensor b, int k, int seed) -> (Tensor, Tensor, Tensor)", &crs_mm);
  m.def("crs_mm_backward(Tensor grad, Tensor a, Tensor b, Tensor idx, Tensor scale, bool need_a, bool need_b)"
        " -> (Tensor, Tensor)",
        &crs_mm_backward);
  m.def("crs_conv(Tensor x, Tensor w, Tensor? bias, int[] stride, int[] padding, int[] dilation, int k, int seed)"
        " -> (Tensor, Tensor, Tensor)", &crs_conv);
  m.def("crs_conv_backward(Tensor grad, Tensor x, Tensor w, Tensor idx, Tensor scale, int[] stride, "
        "int[] padding, int[] dilation, bool need_x, bool need_w, bool need_bias) -> (Tensor, Tensor, Tensor)",
        &crs_conv_backward);
}
