"""What closing the curation loop gains: held-out accuracy before, after dropping the top k, after
relabelling the top k to the prediction, and the oracle (drop exactly the flipped samples).

    python benchmarks/curation.py [--quick] [--json curation.json]

demo:digits and demo:mnist5k, symmetric and pair noise at 20%, seeds 0-2, the product's recipe
(``oga analyze`` then ``oga retrain``'s code path) in a temporary cache; ``--quick``: digits,
symmetric, seed 0, 4 epochs. Prints the markdown table; the logic is ``oga_core.bench.curation``.
Writes nothing but ``--json``.
"""

import sys

from _common import parse, save

from oga_core.bench import curation

if __name__ == "__main__":
    args = parse(__doc__.splitlines()[0])
    part = curation.run_curation(
        curation.CurationSettings.for_run(quick=args.quick), log=lambda m: print(m, file=sys.stderr, flush=True)
    )
    save(part, args.json)
    print(curation.render(part))
