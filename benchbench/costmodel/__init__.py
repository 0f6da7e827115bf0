"""The cost model: calibrate on the hardware at hand, predict any plan at any scale, validate the
prediction against every measured job, recommend a plan.

* :mod:`~benchbench.costmodel.collectives` — nccl-tests' bus factors and the α-β time of each
  collective (Thakur, Rabenseifner & Gropp, "Optimization of Collective Communication Operations
  in MPICH", IJHPCA 2005), fitted from a measured sweep or taken from a profile's link specs;
* :mod:`~benchbench.costmodel.calibration` — the calibration of one hardware profile (collective
  fits, achieved matmul FLOP/s, each model's forward/backward/optimizer time, the share of a
  collective hidden behind concurrent compute), measured (``benchbench calibrate``) or "from
  spec"; one JSON file, read and written here;
* ``calibrate`` (measurement, on the ranks), ``predict`` (one formula per strategy),
  ``validate`` (prediction against records) and ``recommend`` build on those two.

This package imports no torch except in the modules that measure.
"""
