"""jobledger's benchmark suite (issue 6): run it with ``python -m benchmarks``.

See ``docs/performance.md`` for what each figure means and the latest results.
"""
