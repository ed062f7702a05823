"""Scaling of ``oga analyze``: time and peak memory at 5k, 20k and 100k samples, and the UMAP map.

    python benchmarks/scaling.py [--quick] [--device cpu] [--json scaling.json]

Synthetic 1x28x28 images written as torchvision MNIST files; one fresh ``oga analyze`` process
per size (1 training epoch), stage times from its run.json, its own peak RSS; then the UMAP map of
the features timed separately after numba's warm-up. ``--quick``: 2,000 samples, no UMAP. Prints
the markdown table; the logic is ``oga_core.bench.scaling`` (``oga bench --parts scaling``).
"""

from _common import parse, save

from oga_core.bench import scaling
from oga_core.bench.settings import ScalingSettings
from oga_core.train import resolve_device

if __name__ == "__main__":
    args = parse(__doc__.splitlines()[0])
    part = scaling.run_scaling(ScalingSettings.for_run(quick=args.quick), resolve_device(args.device))
    save(part, args.json)
    print(scaling.render(part))
