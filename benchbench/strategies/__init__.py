"""Parallel strategies, the torch side: :func:`~benchbench.strategies.parallelize.parallelize`
applies a :class:`~benchbench.spec.plan.Plan` (``spec/plan.py``, no torch) to a model in one
documented order, each step a small module of its own: ``data_parallel``, ``compression``,
``sharded``, ``tensor_parallel``, ``context_parallel``, ``pipeline_parallel``, ``checkpointing``,
``compiled``, ``float8``, ``async_tp``; ``composition`` reads back what was applied.

Only the ranks import this package (torch inside); the workflow side reads plans from
:mod:`benchbench.spec.plan`.
"""
