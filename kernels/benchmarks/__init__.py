"""asv benchmarks of the kernels in `kernels/` (configuration: kernels/asv.conf.json)."""
