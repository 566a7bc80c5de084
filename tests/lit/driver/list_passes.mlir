// RUN: autopar-opt --list-passes | filecheck %s
// RUN: autopar-opt --describe-pass=autopar-inline | filecheck %s --check-prefix=DESC
// RUN: not autopar-opt --describe-pass=autopar-nope 2>&1 | filecheck %s --check-prefix=ERR

// CHECK: autopar-inline: Inline every func.call and erase private funcs left without callers
// CHECK-NEXT: keep-dead-funcs: bool = false  keep private funcs that no call refers to after inlining
// DESC: autopar-inline: Inline every func.call
// DESC: Before:
// DESC: After:
// DESC: Options:
// DESC-NEXT: keep-dead-funcs: bool = false
// ERR: autopar-opt: error: unknown pass 'autopar-nope' (autopar-opt --list-passes lists them)
