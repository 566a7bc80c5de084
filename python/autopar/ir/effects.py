"""StableHLO ops that act beyond their results, for passes that erase or speculate ops."""

# I/O, host callbacks (custom calls), communication and tokens, and the control flow whose bodies may hold
# any of them: erasing such an op when nothing reads its results, or running it when its branch is not
# taken, changes what the program does.
EFFECTFUL_OPS = frozenset(
    {
        "stablehlo.custom_call",
        "stablehlo.send",
        "stablehlo.recv",
        "stablehlo.infeed",
        "stablehlo.outfeed",
        "stablehlo.after_all",
        "stablehlo.create_token",
        "stablehlo.all_reduce",
        "stablehlo.all_gather",
        "stablehlo.all_to_all",
        "stablehlo.reduce_scatter",
        "stablehlo.collective_permute",
        "stablehlo.collective_broadcast",
        "stablehlo.while",
        "stablehlo.case",
        "stablehlo.if",
    }
)
