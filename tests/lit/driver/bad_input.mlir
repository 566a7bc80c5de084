// Every user mistake gives one error line naming the problem, exit code 1 (`not` fails on a crash or
// signal as well as on success), and no output file.
// RUN: rm -rf %t && mkdir -p %t
// RUN: not autopar-opt %t/missing.mlir -o %t/out 2>&1 | filecheck %s --check-prefix=MISSING
// RUN: not autopar-opt %t 2>&1 | filecheck %s --check-prefix=DIR
// RUN: %python -c "open(r'%t/notmlir.txt','w').write('hello world\n')"
// RUN: not autopar-opt %t/notmlir.txt -o %t/out 2>&1 | filecheck %s --check-prefix=NOTMLIR
// RUN: %python -c "open(r'%t/newer.mlirbc','wb').write(b'ML\xefR\x63MLIR99.0\x00\x01\x02\x03')"
// RUN: not autopar-opt %t/newer.mlirbc -o %t/out 2>&1 | filecheck %s --check-prefix=VERSION
// RUN: %python -c "open(r'%t/junk.bin','wb').write(bytes(range(256)))"
// RUN: %python -c "open(r'%t/empty.bin','wb').close()"
// RUN: not autopar-opt %t/empty.bin --pass-pipeline='builtin.module(autopar-intra-op{mesh=8})' -o %t/out 2>&1 | filecheck %s --check-prefix=EMPTY
// RUN: not autopar-opt - -o %t/out < %t/empty.bin 2>&1 | filecheck %s --check-prefix=EMPTY-STDIN
// RUN: not autopar-opt %t/junk.bin 2>&1 | filecheck %s --check-prefix=JUNK
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-nope)' -o %t/out 2>&1 | filecheck %s --check-prefix=UNKNOWN
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(not-a-pass)' 2>&1 | filecheck %s --check-prefix=UNKNOWN-MLIR
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-inline{nope=1})' 2>&1 | filecheck %s --check-prefix=OPTION
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-inline{keep-dead-funcs=often})' 2>&1 | filecheck %s --check-prefix=TYPED
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(canonicalize{bogus=1})' 2>&1 | filecheck %s --check-prefix=MLIR-OPTION
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-inline,func.func(cse)' 2>&1 | filecheck %s --check-prefix=UNBALANCED
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(cse))' 2>&1 | filecheck %s --check-prefix=EXTRA-PAREN
// RUN: not autopar-opt %s --load-pass-plugin=no_such_plugin_module 2>&1 | filecheck %s --check-prefix=PLUGIN
// RUN: %python -c "open(r'%t/broken_plugin.py','w').write('raise RuntimeError(\"plugin is broken\")\n')"
// RUN: not autopar-opt %s --load-pass-plugin=%t/broken_plugin.py 2>&1 | filecheck %s --check-prefix=PLUGIN-RAISES
// RUN: not autopar-opt %s --no-such-flag 2>&1 | filecheck %s --check-prefix=FLAG
// RUN: not autopar-opt %s --emit=pdf 2>&1 | filecheck %s --check-prefix=EMIT
// Option values are checked when the pipeline is parsed: one line, no reproducer, nothing written.
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=2x4,time-limit=2})' -o %t/out 2>&1 | filecheck %s --check-prefix=COMMA
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=abc})' 2>&1 | filecheck %s --check-prefix=MESH-ABC
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=0x4})' 2>&1 | filecheck %s --check-prefix=MESH-ZERO
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=2x2x2x2})' 2>&1 | filecheck %s --check-prefix=MESH-FOUR
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{time-limit=0})' 2>&1 | filecheck %s --check-prefix=TIME-ZERO
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{time-limit=abc})' 2>&1 | filecheck %s --check-prefix=TIME-ABC
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{planning-budget=inf})' 2>&1 | filecheck %s --check-prefix=PLAN-INF
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{memory-budget=-1})' 2>&1 | filecheck %s --check-prefix=BUDGET
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{axis-names=x,x})' 2>&1 | filecheck %s --check-prefix=NAMES
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-intra-op{mesh=2x4 mesh=4x2})' 2>&1 | filecheck %s --check-prefix=TWICE
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(func.func(autopar-intra-op))' 2>&1 | filecheck %s --check-prefix=NESTED
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(func.func(not-a-pass))' 2>&1 | filecheck %s --check-prefix=NESTED-UNKNOWN
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-inter-op{cluster=2x})' 2>&1 | filecheck %s --check-prefix=CLUSTER
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-inter-op{micro-batches=0})' 2>&1 | filecheck %s --check-prefix=MICRO
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-inter-op{stage-cost-time-limit=inf})' 2>&1 | filecheck %s --check-prefix=STAGE-INF
// RUN: not autopar-opt %s --pass-pipeline='builtin.module(autopar-cluster-layers{num-layers=-1})' 2>&1 | filecheck %s --check-prefix=LAYERS
// RUN: not autopar-opt %s --describe-pass=no-such-pass 2>&1 | filecheck %s --check-prefix=DESCRIBE
// RUN: not test -e %t/out

// MISSING: autopar-opt: error: {{.*}}missing.mlir: no such file
// MISSING-NOT: Traceback
// DIR: autopar-opt: error: {{.*}}: is a directory, expected a StableHLO file
// NOTMLIR: autopar-opt: error: {{.*}}notmlir.txt:1:1: custom op 'hello' is unknown
// NOTMLIR-NOT: error
// VERSION: autopar-opt: error: {{.*}}newer.mlirbc: MLIR bytecode this jaxlib cannot read (written by another MLIR/StableHLO version?): {{.*}}newer than the current version
// VERSION-NOT: error
// JUNK: autopar-opt: error: {{.*}}junk.bin: {{.*}}
// EMPTY: autopar-opt: error: {{.*}}empty.bin is empty (0 bytes): expected a StableHLO module (text, bytecode or VHLO) or a serialized jax.export; was it written?
// EMPTY-NOT: note
// EMPTY-STDIN: autopar-opt: error: <stdin> is empty (0 bytes)
// UNKNOWN: autopar-opt: error: unknown pass 'autopar-nope' (autopar-opt --list-passes lists them)
// UNKNOWN-MLIR: autopar-opt: error: unknown pass 'not-a-pass' (autopar-opt --list-passes lists them)
// OPTION: autopar-opt: error: pass 'autopar-inline' has no option 'nope' (its options: keep-dead-funcs, keep-dead-ops)
// TYPED: autopar-opt: error: option 'keep-dead-funcs' of pass 'autopar-inline' expects bool, got 'often'
// MLIR-OPTION: autopar-opt: error: invalid pipeline element 'canonicalize{bogus=1}': {{.*}}bogus
// UNBALANCED: autopar-opt: error: missing ')' at the end of pipeline
// EXTRA-PAREN: autopar-opt: error: unbalanced ')' at column 20 of pipeline
// PLUGIN: autopar-opt: error: cannot load pass plugin 'no_such_plugin_module': ModuleNotFoundError: No module named 'no_such_plugin_module'
// PLUGIN-RAISES: autopar-opt: error: cannot load pass plugin '{{.*}}broken_plugin.py': RuntimeError: plugin is broken
// FLAG: autopar-opt: error: unrecognized arguments: --no-such-flag
// EMIT: autopar-opt: error: argument --emit: invalid choice: 'pdf'
// COMMA: autopar-opt: error: option 'mesh' of pass 'autopar-intra-op' got '2x4,time-limit=2': separate options with spaces, not commas (autopar-intra-op{mesh=2x4 time-limit=2})
// COMMA-NOT: reproduce
// MESH-ABC: autopar-opt: error: pass 'autopar-intra-op': mesh 'abc' is not a shape like 8, 2x4 or 2x2x2
// MESH-ZERO: autopar-opt: error: pass 'autopar-intra-op': mesh '0x4' must have 1 to 3 axes of size >= 1
// MESH-FOUR: autopar-opt: error: pass 'autopar-intra-op': mesh '2x2x2x2' must have 1 to 3 axes of size >= 1
// TIME-ZERO: autopar-opt: error: pass 'autopar-intra-op': time-limit must be > 0 and at most 1e+08 seconds, got 0.0
// TIME-ABC: autopar-opt: error: option 'time-limit' of pass 'autopar-intra-op' expects float, got 'abc'
// PLAN-INF: autopar-opt: error: pass 'autopar-intra-op': planning-budget must be > 0 and at most 1e+08 seconds, got inf
// PLAN-INF-NOT: internal error
// BUDGET: autopar-opt: error: pass 'autopar-intra-op': memory-budget must be >= 0 bytes (0 = none), got -1
// NAMES: autopar-opt: error: pass 'autopar-intra-op': axis-names 'x,x' repeats a name
// TWICE: autopar-opt: error: option 'mesh' of pass 'autopar-intra-op' is given twice
// NESTED: autopar-opt: error: 'autopar-intra-op' is a module-level pass: put it at the top level, builtin.module(autopar-intra-op), not inside func.func(...)
// NESTED-UNKNOWN: autopar-opt: error: unknown pass 'not-a-pass' (autopar-opt --list-passes lists them)
// CLUSTER: autopar-opt: error: pass 'autopar-inter-op': cluster '2x' is not of the form HxD with positive H and D (e.g. 2x8)
// MICRO: autopar-opt: error: pass 'autopar-inter-op': micro-batches must be >= 1, got 0
// STAGE-INF: autopar-opt: error: pass 'autopar-inter-op': stage-cost-time-limit must be > 0 and at most 1e+08 seconds, got inf
// LAYERS: autopar-opt: error: pass 'autopar-cluster-layers': num-layers must be >= 0 (0: hand-placed boundaries only), got -1
// DESCRIBE: autopar-opt: error: unknown pass 'no-such-pass' (autopar-opt --list-passes lists them)
func.func public @main(%arg0: tensor<2xf32>) -> tensor<2xf32> {
  return %arg0 : tensor<2xf32>
}
