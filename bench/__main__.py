"""``python -m bench``: every cluster-scale benchmark, its figures, plots and docs/benchmarks.md."""

from bench.run_all import main

raise SystemExit(main())
