"""Nearest-neighbour indexes for "more like this": exact brute force, scikit-learn, pynndescent.

    python benchmarks/neighbors.py [--quick] [--json neighbors.json]

Build time, one k = 20 query and pynndescent's recall on synthetic 128-d data at 100 k and 1 M
rows, and the whole 10-NN graph at 20 k and 100 k rows (``--quick``: 5,000 rows, no pynndescent:
its numba compilation alone takes minutes). Prints the markdown tables; the logic is
``oga_core.bench.neighbors``. Writes nothing but ``--json``.
"""

from _common import parse, save

from oga_core.bench import neighbors

if __name__ == "__main__":
    args = parse(__doc__.splitlines()[0])
    part = neighbors.run_neighbors(neighbors.NeighborSettings.for_run(quick=args.quick))
    save(part, args.json)
    print(neighbors.render(part))
