"""The command-line tools of the package, one module each, installed as `sg2-<tool>` console scripts.

generate, style_mixing, gen_video, edit, projector, app, calc_metrics, train, dataset_tool, bg_white, convert:
each module holds its tool's click command (`main`) and entry point (`cli`); the top-level scripts of a
checkout (`python generate.py ...`) only call `cli`. options.py defines the options the tools share,
runner.py turns errors into one-line messages, outputs.py is the overwrite policy (--force).

The name says what it holds (the sg2-* commands) and stays clear of generic module names (`cli`, `tools`,
`scripts`) that other packages install.
"""
