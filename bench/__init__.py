"""Benchmarks of btnet-lab: what it costs, side by side with the alternatives, in one run each.

Each module is one command that measures one thing and writes its own section of
``BENCHMARKS.md`` (see :func:`bench._common.write_section`)::

    .venv/bin/python -m bench.model_cost   # MACs, parameters, latency: branch vs upsample
    .venv/bin/python -m bench.throughput   # training images/s and FLOP/s vs the matmul peak
    .venv/bin/python -m bench.store        # result store vs Ray's ExperimentAnalysis; dashboard
    .venv/bin/python -m bench.run_all      # all of them (``make bench``)

``--quick`` runs a tiny size (the test suite uses it to prove each benchmark still works; it
never asserts a timing). Benchmarks are not part of the test suite.
"""

import os

# The development machine's cores are shared: OpenMP threads that spin while they wait for
# work (the default) slow torch down badly when another process holds a core. Set before any
# benchmark module imports torch; an explicit OMP_WAIT_POLICY in the environment wins, and
# every section reports the value it ran with.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
