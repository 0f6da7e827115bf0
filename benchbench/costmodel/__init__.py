"""The cost model: calibrate on the hardware at hand, predict any plan at any scale, validate the
prediction against every measured job, recommend a plan.

* :mod:`~benchbench.costmodel.collectives` — nccl-tests' bus factors and the α-β time of each
  collective (Thakur, Rabenseifner & Gropp, "Optimization of Collective Communication Operations
  in MPICH", IJHPCA 2005), fitted from a measured sweep or taken from a profile's link specs;
* :mod:`~benchbench.costmodel.calibration` — the calibration of one hardware profile (collective
  fits, achieved matmul FLOP/s, each model's forward/backward/optimizer time, the share of a
  collective hidden behind concurrent compute), measured (``benchbench calibrate``) or "from
  spec"; one JSON file, read and written here;
* :mod:`~benchbench.costmodel.calibrate` — the parent side of ``benchbench calibrate``: the typed
  spec of what to measure, the launch, the α-β fit (the ranks' side: :mod:`benchbench.rank.calibrate`);
* the formulas, one function per strategy family: :mod:`~benchbench.costmodel.compute`,
  :mod:`~benchbench.costmodel.data_parallel`, :mod:`~benchbench.costmodel.model_parallel`, over
  :mod:`~benchbench.costmodel.context` (the rank's view) and :mod:`~benchbench.costmodel.tensors`
  (what a rank holds); :mod:`~benchbench.costmodel.memory` (the memory estimates);
  :mod:`~benchbench.costmodel.predict` composes them into one job's :class:`~benchbench.costmodel.predict.Prediction`,
  :mod:`~benchbench.costmodel.grid` over a study's grid;
* :mod:`~benchbench.costmodel.plan_space` (the plan space), :mod:`~benchbench.costmodel.recommend` and
  :mod:`~benchbench.costmodel.validate` (prediction against records) build on those.

No module here imports torch: the built-in models are counted analytically; only a custom model is
counted on its meta-built model (:mod:`benchbench.models.accounting`, torch).
"""
