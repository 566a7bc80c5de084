"""autopar's errors as `parallelize` users meet them: raised from their own call, in the API's terms."""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable
from typing import Any

from autopar.api.methods import AutoShardingOption
from autopar.errors import AutoparError


def user_facing(method: Callable[..., Any]) -> Callable[..., Any]:
    """autopar's own errors surface at the user's call: the frames inside autopar and its passes are
    dropped from the traceback (a bug, any other exception, keeps all of them)."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except AutoparError as err:
            raise err.with_traceback(None) from None

    return wrapper


def in_api_terms(message: str, method: Any) -> str:
    """A pass message in the words of `parallelize`'s API: pass options become the fields users set
    (`force-data-parallel` -> `force_data_parallel`, set by DataParallel), layer clustering points to
    `layer_option`."""
    if "autopar-cluster-layers needs num-layers" in message:
        return (
            f"{method.name} needs the step cut into layers: pass "
            "layer_option=AutoLayerOption(layer_num=N), or mark the boundaries yourself with "
            "autopar.mark_pipeline_boundary() and layer_option='manual'"
        )
    if "@main has no forward computation to cluster into layers" in message:
        return (
            f"{method.name}: the step computes nothing from its arguments to cut into pipeline stages (no "
            "forward ops); run it with ShardParallel"
        )
    # The pass's remedies for memory are options PipeshardParallel sets itself or does not offer.
    message = message.replace(
        ", remat=true or a larger device-memory (bytes)", " or a larger memory_per_device_gib"
    )
    # Layers marked by hand decide the count: the layer option names it.
    message = re.sub(
        r"num-layers=(\d+) disagrees with the (\d+) pipeline boundaries marked by hand \((\d+) layers\): "
        r"drop num-layers or set it to \d+",
        r"AutoLayerOption(layer_num=\1) disagrees with the \2 pipeline boundaries marked by hand "
        r"(\3 layers): use layer_option='manual', or AutoLayerOption(layer_num=\3)",
        message,
    )
    # Stages placed by hand: the fields of ManualStageOption (the pass reads them as one manual-stages text).
    message = re.sub(
        r"manual-stages end at layer (\d+), but the step has (\d+) layers",
        r"ManualStageOption's forward_stage_layer_ids end before layer \1, but the step has \2 layers",
        message,
    )
    message = re.sub(
        r"manual-stages use (\d+) devices, more than the cluster's (\d+)",
        r"ManualStageOption's submesh_physical_shapes use \1 devices, more than the \2 given",
        message,
    )
    # The stage count is UniformStageOption's field.
    message = re.sub(
        r"num-stages=(\d+) is more than the (\d+) layers: use at most \d+ stages or cluster into more layers",
        r"UniformStageOption(num_stages=\1) asks for more stages than the \2 layers: use num_stages "
        r"<= \2, or more layers (AutoLayerOption(layer_num=...))",
        message,
    )
    message = re.sub(
        r"num-stages=(\d+) (does not divide|needs submeshes)",
        r"UniformStageOption(num_stages=\1) \2",
        message,
    )
    message = message.replace(
        "use num-stages 0 (the DP chooses)", "leave stage_option out (the stage DP chooses)"
    )
    message = message.replace("use num-stages ", "use num_stages ").replace(
        "to submesh-shapes", "to PipeshardParallel's submesh_shapes"
    )
    # Which pass said it is the implementation's business: `parallelize` runs them all.
    message = re.sub(r"pass '(?:autopar|sdy)-[a-z-]+'(?: failed)?: ", "", message)
    # The layer count is AutoLayerOption's field, not the pass option.
    message = re.sub(r"use num-layers <= (\d+)", r"use layer_option=AutoLayerOption(layer_num=\1)", message)
    fields = {f.name for f in dataclasses.fields(AutoShardingOption)}

    def rename(match: re.Match) -> str:
        name = match.group(0).replace("-", "_")
        return name if name in fields else match.group(0)

    message = re.sub(r"\b[a-z]+(?:-[a-z]+)+\b", rename, message)
    # ... and their values Python's: `allow_all_gather=false` -> `allow_all_gather=False`.
    message = re.sub(r"\b([a-z_]+)=(true|false)\b", lambda m: _python_flag(m, fields), message)
    message = message.replace("pass 'autopar-intra-op' failed: ", "").replace(
        "autopar-intra-op", "the planner"
    )
    if method.name in ("DataParallel", "Zero2Parallel", "Zero3Parallel"):  # they set force_data_parallel
        message = message.replace("force_data_parallel", f"{method.name} (force_data_parallel)", 1)
    return f"{method.name}: {message}"


def _python_flag(match: re.Match, fields: set[str]) -> str:
    name, value = match.group(1), match.group(2)
    return f"{name}={value.capitalize()}" if name in fields else match.group(0)
