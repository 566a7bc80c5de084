"""autopar.calibrate: measure the devices at hand and write the cluster profile the cost model reads.

    python -m autopar.calibrate [--devices N | --devices 0,1,2,3] [--mesh 2x4] [--quick]
                                [--device-figures earlier.json] -o profile.json

measures one device's FLOP/s (a matmul chain) and memory bandwidth (an elementwise op), every device busy
at once, and per mesh axis the alpha and beta of all-reduce, all-gather, reduce-scatter and all-to-all
(XLA-compiled `shard_map` collectives, 1 KiB to 64 MiB), fitted to the cost model's own formulas
(`autopar.cost.MeshModel`). The profile is what `autopar-intra-op{cluster-profile=...}` and
`ShardParallel(auto_sharding_option=AutoShardingOption(cluster_profile=...))` read (docs/cost_model.md).
`--device-figures` keeps an earlier profile's device figures (profiles of several meshes of the same
devices then price compute alike). Run it at normal priority: under real-time scheduling its chains
measured faster than steps run (docs/cost_model.md, "Calibrate at normal priority").
"""

from autopar.calibrate.fit import fit_collective, fit_joint, nonnegative_line
from autopar.calibrate.profile import calibrate, parse_mesh, select_devices, write_profile

__all__ = [
    "calibrate",
    "fit_collective",
    "fit_joint",
    "nonnegative_line",
    "parse_mesh",
    "select_devices",
    "write_profile",
]
