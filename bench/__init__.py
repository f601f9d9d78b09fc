"""cofab benchmarks: `python -m bench` runs them all, `python -m bench rpc` runs one.

Each benchmark is a module in this package that exposes a `harness.Benchmark` and is listed in
`BENCHMARKS` in `bench/__main__.py`. A benchmark returns a `harness.Report` whose figures are
ratios against a baseline measured in the same run, because the machines we run on are noisy;
the runner prints the report and appends it, with the machine's description, to
`bench/RESULTS.md`.
"""
