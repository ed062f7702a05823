"""Detection quality of OGA and its baselines on label noise injected with the truth kept.

    python benchmarks/quality.py [--quick] [--device cpu] [--json quality.json]

Measures, for demo:digits and demo:mnist5k with symmetric and pair noise at 10/20/40% and 3
seeds (``--quick``: digits, symmetric 20%, one seed), the AUROC, average precision and
precision/recall at 5% and at the true noise count of every score — OGA L1 / L2 / Isolation Forest
on the last layer and on all layers, loss, EL2N, margin, cleanlab (5-fold out-of-sample
probabilities, given labels) and random — and the final-epoch test accuracy after dropping the top
5% and retraining. Prints the markdown tables of ``docs/benchmarks.md``; the logic is
``oga_core.bench.quality`` (``oga bench --parts quality`` runs the same and writes the report).
"""

from _common import parse, save

from oga_core.bench import quality
from oga_core.bench.settings import QualitySettings
from oga_core.train import resolve_device

if __name__ == "__main__":
    args = parse(__doc__.splitlines()[0])
    part = quality.run_quality(QualitySettings.for_run(quick=args.quick), resolve_device(args.device))
    save(part, args.json)
    print(quality.render(part, plot_name=None))
