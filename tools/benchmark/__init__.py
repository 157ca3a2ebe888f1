"""The project's benchmark, one module per job: ``measure`` (data, clocks, the floor), ``engine_epoch``
and ``straightforward`` (the two pipelines timed), ``report`` (the table); ``tools/bench.py`` drives them."""
