"""The dropped rule: the study's dropped combinations (``params.dropped``) -> ``dropped.json``.

A script, not a shell line (the list can outgrow a command line) nor a ``run:`` block (a ``run:``
job re-reads the whole workflow in a new process)."""

from benchbench.protocol.record import write_json

write_json(snakemake.output[0], snakemake.params.dropped, log=snakemake.log[0])  # noqa: F821 (given by Snakemake)
