"""Analysis of btnet-lab studies: the Parquet result store, statistics and dashboards.

``analysis`` reads only the result store (it imports neither Ray nor torch):

* :mod:`analysis.store` owns the store format and is the only writer
  (:func:`~analysis.store.write_trial`) and reader (:func:`~analysis.store.read_trials`,
  :func:`~analysis.store.read_curves`, :func:`~analysis.store.sql`);
* :mod:`analysis.stats`, :mod:`analysis.importance`, :mod:`analysis.pareto` compute paired
  ablation statistics, hyper-parameter importance and accuracy-cost fronts;
* :mod:`analysis.dashboard`, :mod:`analysis.live`, :mod:`analysis.export` draw them;
* :mod:`analysis.cli` is ``btnet-lab results`` and ``btnet-lab dashboard``.

See ``docs/store.md`` and ``docs/analysis.md``.
"""
