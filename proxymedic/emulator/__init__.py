"""An in-process Kubernetes API emulator built on kmock, for tests, the demo and the benchmarks."""
