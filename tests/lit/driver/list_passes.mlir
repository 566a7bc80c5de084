// RUN: autopar-opt --list-passes | filecheck %s
// RUN: autopar-opt --describe-pass=autopar-inline | filecheck %s --check-prefix=DESC
// RUN: not autopar-opt --describe-pass=autopar-nope 2>&1 | filecheck %s --check-prefix=ERR
// RUN: autopar-opt --describe-pass=canonicalize | filecheck %s --check-prefix=JAXLIB
// RUN: autopar-opt --describe-pass=sdy-populate-op-sharding-rules | filecheck %s --check-prefix=NESTED
// RUN: autopar-opt --version | filecheck %s --check-prefix=VERSION

// CHECK: autopar-inline: Inline every func.call and erase private funcs left without callers
// CHECK-NEXT: keep-dead-funcs: bool = false  keep private funcs that no call refers to after inlining
// DESC: autopar-inline: Inline every func.call
// DESC: Before:
// DESC: After:
// DESC: Options:
// DESC-NEXT: keep-dead-funcs: bool = false
// ERR: autopar-opt: error: unknown pass 'autopar-nope' (autopar-opt --list-passes lists them)
// JAXLIB: canonicalize: MLIR's canonicalizer
// JAXLIB: Registered by jaxlib, not autopar; runs on the whole module.
// JAXLIB-NEXT: In a pipeline: --pass-pipeline='builtin.module(canonicalize)'
// JAXLIB: canonicalize{{{.*}}max-iterations=10
// NESTED: runs on each func.func, so nest it in func.func(...)
// NESTED-NEXT: In a pipeline: --pass-pipeline='builtin.module(func.func(sdy-populate-op-sharding-rules))'
// VERSION: autopar-opt {{[0-9]+\.[0-9]+\.[0-9]+}}
