"""Speed and memory of OGA's scoring as ratios against baselines measured in the same process.

    python benchmarks/speed.py [--quick] [--device cpu|cuda] [--json speed.json]

Measures, on the small CNN (1x28x28) and ResNet-18 (3x32x32) with synthetic images: last-layer
scoring / one inference pass (goal <= 1.3), all-layer ghost norms / one training epoch (time and
peak memory), speed-ups over the paper's per-sample autograd loop, torch.func vmap and cleanlab's
whole 5-fold pipeline, and the seconds of a cache hit and of a change of detector. Prints the
markdown tables; the logic is ``oga_core.bench.speed`` (``oga bench --parts speed``).
Needs torch, torchvision, numpy, pandas and scikit-learn; cleanlab, mlxtend and pyarrow are used
when present (see ``benchmarks/gpu_speed.sh`` for a GPU run).
"""

from _common import parse, save

from oga_core.bench import speed
from oga_core.bench.settings import SpeedSettings
from oga_core.train import resolve_device

if __name__ == "__main__":
    args = parse(__doc__.splitlines()[0])
    device = resolve_device(args.device)
    part = speed.run_speed(SpeedSettings.for_run(quick=args.quick, device_type=device.type), device)
    save(part, args.json)
    print(speed.render({device.type: part}))
