"""galaxymorph's benchmarks, one harness: ``python -m benchmarks NAME [--tiny] [options]``.

Every public module here is a benchmark: ``add_arguments(parser)``, ``TINY`` (the settings
of ``--tiny``) and ``measure(args, result)``. Helpers are private: the harness (work folders,
commit, machine, result files), the shared set-up, the renderer of BENCHMARKS.md and the
micro-benchmarks' cases. How to run them: docs/development.md.
"""
