"""What the process-per-mesh executor (runtime/processes.py) sends each mesh worker once: its `WorkerPlan`
(runtime/mesh_worker.py), read off the step program (runtime/step.py). Values are numbered (the @main
arguments first, then every call's results in order), and every value one worker sends another carries its
route: the reading worker, and the autopar.transfer plan (autopar-reshard) that says which slices go."""

from __future__ import annotations

import io
from typing import Any

from jaxlib.mlir import ir

from autopar.ir import attrs
from autopar.runtime.mesh_worker import WorkerPlan
from autopar.runtime.step import Call, StepProgram, runnable_stage_module


class WorkerPlanner:
    """Plans the workers of `program` (`meshes[w]`: worker w's cluster device ids, `worker_of`: each stage
    function's worker, `cores[w]`: its cores)."""

    def __init__(
        self,
        program: StepProgram,
        meshes: list[tuple[int, ...]],
        worker_of: dict[str, int],
        platform: str,
        cores: list[tuple[int, ...] | None],
    ):
        self.program, self._meshes, self._worker_of = program, meshes, worker_of
        self._platform, self.cores = platform, cores
        self.ids = {v: i for i, v in enumerate(program.arguments)}
        for c in program.calls:
            for v in c.results:
                self.ids[v] = len(self.ids)
        self._ids = self.ids

    def reading_workers(self, value: ir.Value, apply: bool) -> set[int]:
        """The workers whose apply parts (apply=True) or forward/backward parts read `value`."""
        return {
            self._worker_of[c.callee]
            for c in self.program.calls
            if (c.part == "apply") == apply and value in c.operands
        }

    def _route(self, reader: Call, j: int) -> tuple[int, Any]:
        """(transfer number, plan or None) by which operand j of `reader` arrives from another mesh: the
        autopar.transfer op that moves it (autopar-reshard), numbered among its value's transfers."""
        t = reader.transfers[j] if reader.transfers else None
        if t is None:
            return 0, None
        return self.program.copies[t.source].index(t.result), t.plan

    def _routes(self, value: ir.Value, apply: bool, worker: int) -> tuple[tuple[int, int, Any], ...]:
        """Where `value` goes from `worker`: (reading worker, transfer number, plan) for each other mesh's
        forward/backward (apply=False) or apply parts that read it, each route once."""
        routes: dict[tuple[int, int], Any] = {}
        for c in self.program.calls:
            w = self._worker_of[c.callee]
            if (c.part == "apply") != apply or w == worker:
                continue
            for j, operand in enumerate(c.operands):
                if operand == value:
                    n, plan = self._route(c, j)
                    routes[(w, n)] = plan
        return tuple((w, n, plan) for (w, n), plan in sorted(routes.items(), key=lambda item: item[0]))

    def _instruction(self, call: Call, micro_batch: int, worker: int) -> tuple:
        # A forward/backward result goes to the other meshes' parts that read it for the same micro-batch;
        # an apply result (the shared step count of Adam, say) to the other meshes' apply parts.
        sends = []
        for v in call.results:
            routes = self._routes(v, micro_batch < 0, worker)
            if routes:
                sends.append((self._ids[v], routes))
        local = {v for c in self.program.calls if self._worker_of[c.callee] == worker for v in c.results}
        moved = {
            j: self._route(call, j)
            for j, v in enumerate(call.operands)
            if self._ids[v] >= len(self.program.arguments) and v not in local
        }
        return (
            call.callee,
            micro_batch,
            tuple(self._ids[v] for v in call.operands),
            tuple(self._ids[v] for v in call.results),
            tuple(sends),
            moved,
        )

    def plan(self, w: int) -> WorkerPlan:
        prog = self.program
        mine = [c for c in prog.calls if self._worker_of[c.callee] == w]
        stages = {}
        for c in mine:
            mesh = attrs.get_stage_mesh(c.function)
            assert mesh is not None
            positions = tuple(self._meshes[w].index(i) for i in mesh.device_ids)
            donated = prog.donated_operands.get(c.callee, ())
            module = runnable_stage_module(c.callee, c.function, donated)
            stages[c.callee] = (_bytecode(module), positions)
        program = [
            self._instruction(prog.call_of[(ins.part, ins.stage)], ins.micro_batch, w)
            for ins in prog.order
            if self._worker_of[prog.call_of[(ins.part, ins.stage)].callee] == w
        ]
        readers: dict[int, int] = {}
        for c in mine:
            if c.part != "apply":
                for v in set(c.operands):
                    readers[self._ids[v]] = readers.get(self._ids[v], 0) + 1
        produced = {v for c in mine if c.part != "apply" for v in c.results}
        gather = {self._ids[v]: prog.combine.get(v, "same") for v in prog.accumulated if v in produced}
        gathered_to = {}
        for v in prog.accumulated:
            if v in produced and (routes := self._routes(v, True, w)):
                gathered_to[self._ids[v]] = routes
        return WorkerPlan(
            index=w,
            num_workers=len(self._meshes),
            platform="cpu" if self._platform == "cpu" else "gpu",
            num_devices=len(self._meshes[w]),
            cores=self.cores[w],
            stages=stages,
            program=program,
            applies=[self._instruction(c, -1, w) for c in mine if c.part == "apply"],
            num_arguments=len(prog.arguments),
            batch_arguments=tuple(prog.batch_arguments),
            micro_batches=prog.num_micro_batches,
            readers=readers,
            gather=gather,
            gathered_to=gathered_to,
        )


def _bytecode(module: ir.Module) -> bytes:
    buffer = io.BytesIO()
    module.operation.write_bytecode(buffer)
    return buffer.getvalue()
