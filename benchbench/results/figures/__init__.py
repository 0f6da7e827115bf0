"""The figures (matplotlib): the study's, from scaling.csv (:mod:`.study`, ``benchbench plot``), and the
cost model's, from the calibration sweeps and predictions.csv (:mod:`.costmodel`, ``benchbench
plot-costmodel``); what both share to draw and save (:mod:`.draw`), one colour per strategy
(:mod:`.palette`), and every caption and title (:mod:`.captions`: no matplotlib, the report reads it)."""
