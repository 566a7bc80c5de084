"""autopar.runtime: compile an sdy-annotated StableHLO module with XLA for a device mesh and run it.

`compile(module, devices)` -> `ShardedExecutable`; calling it with one array per `@main` argument returns
jax.Arrays with the NamedSharding the module gives each result.
"""

from autopar.runtime.executable import ShardedExecutable, compile
from autopar.runtime.mesh import check_mesh_shape, default_axis_names, make_mesh
from autopar.runtime.shardings import MeshSpec, ShardingError, annotate_main, main_func, module_meshes

__all__ = [
    "MeshSpec",
    "ShardedExecutable",
    "ShardingError",
    "annotate_main",
    "check_mesh_shape",
    "compile",
    "default_axis_names",
    "main_func",
    "make_mesh",
    "module_meshes",
]
