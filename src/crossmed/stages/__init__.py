"""The work of each `dvc.yaml` stage, one module per stage and named after it: `run(cfg)` reads and writes `cfg.paths.*`.

pipelines/<stage>.py hands the composed config to crossmed.stages.<stage>.run; tests and benchmarks call the same
function with their own paths. Functions other stages reuse live in the packages below (data, model, sources, ...).
"""
