"""Ablation studies and hyperparameter sweeps of BTNet on Ray Tune.

A study file (``search_spaces/*.yaml``, schema in ``docs/studies.md``) becomes trials that run
btnet_core's two training stages on Ray Tune, each ending as one row of the result store.

* :mod:`ablations.study` -- read and validate a study file (``load_study``)
* :mod:`ablations.trials` -- the study's data model and its expansion into trials
* :mod:`ablations.searcher` -- what trial Tune runs next (fixed plans, Optuna TPE / NSGA-II)
* :mod:`ablations.trainable` -- one trial: trunk from the cache, stage 2, reports, checkpoints
* :mod:`ablations.trunk_cache` -- one training per shared trunk, coordinated by a Ray actor
* :mod:`ablations.runner` -- ``run_study``: Tune, store rows, progress, resume
* :mod:`ablations.rows`, :mod:`ablations.summary` -- store rows, end-of-study summary
* :mod:`ablations.storage` -- the study's folders on a local path or a pyarrow URI
* :mod:`ablations.cli` -- the ``btnet-lab sweep`` command

Importing this package imports neither Ray nor torch; :mod:`ablations.runner` imports Ray.
"""
