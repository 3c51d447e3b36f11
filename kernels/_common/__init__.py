"""Plumbing every kernel family shares.

- `dispatch`: how a family declares its implementations (reference, C++, Triton) and how one is
  picked for a call, with the one override (`impl=` / `EFFITRAIN_KERNEL_IMPL`).
- `random`: seed drawing and the counter-based hashes of the fast paths (host side and Triton);
  `random.h` is the same for the C++ sources.
- `build`: compiles `kernels/csrc/<family>.cpp` once and caches it.
- `machine`: what this machine allows (copy bandwidth, matmul peak) and the quick benchmark registry.
- `contract`: the small declaration each family gives the contract test (tests/test_kernels_contract.py).
"""
