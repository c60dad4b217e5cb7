"""``--engine ray``: validate and generate as a Ray Data pipeline, on a laptop or a cluster.

::

    pipesql validate --engine ray --benchmark spider --data-dir data/spider --split train
    RAY_ADDRESS=head:6379 pipesql generate --engine ray --golden-pairs ... --benchmark spider ...  # on a node of it

The units of a job (validate: items; generate: one database's pairs) are cut into shards, every
unit of a database in the same shard, so a worker builds each database, its schema and its
variants once (:mod:`pipesql.scale.shards`). Ray Data reads the pending shards, hands each to an
actor that holds ZetaSQL and an LRU of open databases (``map_batches`` over an actor pool), and
the actor writes the shard's results and a completion marker (:mod:`pipesql.scale.engine`); what a
unit is and how it is worked is the stage's (``pipesql.validate.ray_engine``,
``pipesql.generate.ray_engine``). A
rerun skips the shards that have a marker, so a killed driver or worker costs only the units in
flight; the driver then streams the shards back in input order into the stage's usual outputs.

``local`` (the default) is the stage's own processes; ``ray`` needs the ``pipesql[cluster]`` extra.
With ``RAY_ADDRESS`` set it joins that cluster, otherwise it starts one on this machine. The driver
must run on a node of the cluster: Ray Data does not run through Ray Client (``ray://``).
"""

ENGINES = ("local", "ray")
