"""Performance scripts, run from the project root as modules: ``python -m benchmarks.<name>``
(each prints medians beside a bare baseline measured in the same run)."""
