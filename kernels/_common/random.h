// Counter-based random numbers of the C++ fast paths: the hashes kernels/_common/random.py
// describes (and computes on the host and in Triton), one definition for every csrc/*.cpp.
//
// Every draw depends only on (seed, element or draw index), never on the thread count or the
// chunking. fmix32 is murmur3's 32-bit finaliser (Appleby, MurmurHash3.cpp); mix64 is
// splitmix64's finaliser (Steele, Lea & Flood, OOPSLA 2014). The three families key them
// differently (random.py lists how); the schemes stay as they were, so outputs keep their bits.

#pragma once

#include <cstdint>

namespace effitrain_random {

inline uint32_t fmix32(uint32_t h) {  // a bijection with full avalanche
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  h ^= h >> 16;
  return h;
}

inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

inline float uniform24(uint32_t h) { return static_cast<float>(h >> 8) * 0x1p-24f; }  // [0, 1), 2^-24 grid

// ---------------------------------------------------------------- rounding (csrc/rounding.cpp)

struct Keys {
  uint32_t k1, k2;
};

// Keys for the elements of one 2^32-element block: the block number (high index bits) is mixed
// into the keys, so the inner loop hashes only the low 32 bits of the index.
inline Keys rounding_keys(int64_t seed, int64_t first_index) {
  const auto s = static_cast<uint64_t>(seed);
  const auto block = static_cast<uint32_t>(static_cast<uint64_t>(first_index) >> 32);
  const uint32_t k1 = fmix32(static_cast<uint32_t>(s) ^ fmix32(block + 0x9E3779B9u));
  const uint32_t k2 = fmix32(static_cast<uint32_t>(s >> 32) + 0x7F4A7C15u + k1);
  return {k1, k2};
}

// One round of fmix32 over a Weyl step of the index. Two seeds whose k1 differ by a multiple of
// the Weyl constant give shifted copies of one stream; for random seeds that needs k1 to collide
// within the tensor's length, which is harmless here.
inline uint32_t rounding_hash(uint32_t i, Keys k) { return fmix32(i * 0x9E3779B1u + k.k1) ^ k.k2; }

// ---------------------------------------------------------------- sparsify (csrc/sparsify.cpp)
// Unlike rounding: key1 is not chained on key0, the block number is xored into key1 as well, and
// the hash is two rounds of fmix32 with the index xored in (kept as they were: same bits).

inline Keys sparsify_keys(int64_t seed, uint32_t block) {
  const auto s = static_cast<uint64_t>(seed);
  const uint32_t key0 = fmix32(static_cast<uint32_t>(s) ^ fmix32(block + 0x9E3779B9u));
  const uint32_t key1 = fmix32(static_cast<uint32_t>(s >> 32) + 0x7F4A7C15u) ^ block;
  return {key0, key1};
}

inline uint32_t sparsify_hash(uint32_t i, uint32_t key0, uint32_t key1) { return fmix32(fmix32(i ^ key0) + key1); }

// ---------------------------------------------------------------- crs (csrc/crs.cpp)
// The t-th of k draws: 53 random bits of splitmix64 keyed by the seed. (The Triton sampler uses a
// 24-bit fmix32 scheme instead, random.py `crs_key32`: the two crs paths share no bits.)

inline double crs_uniform53(uint64_t seed, uint64_t t) {  // in [0, 1)
  const uint64_t h = mix64(mix64(seed * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL) + t);
  return static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace effitrain_random
