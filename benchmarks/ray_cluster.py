"""rnnlab compare on a Ray cluster of several nodes simulated on this machine.

Starts a head and worker nodes with ``ray.cluster_utils.Cluster`` (separate
raylets, each with its own CPU count, all on this host), runs ``rnnlab
compare`` with ``ray=<cluster address>``, and prints which node ran each
(experiment, seed) task, the tasks per node, and the wall time. The timing
experiments run on the driver after the Ray part, as always.

    python benchmarks/ray_cluster.py                       # default preset, 3 nodes of 1 CPU
    python benchmarks/ray_cluster.py --preset quick --only digits memory_tasks --seeds 4

The nodes share this machine's cores: with 3 nodes of 1 CPU on 2 cores, three
tasks run at once on two cores (the numbers are the same; the wall time shows
what the spread costs or gains here). Needs ``pip install 'rnnlab[ray]'``.
"""

from __future__ import annotations

import argparse
import collections
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default", choices=["quick", "default", "full"])
    parser.add_argument("--seeds", type=int, default=None, help="default: the preset's")
    parser.add_argument("--only", nargs="+", default=None, help="experiments (default: all)")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--cpus-per-node", type=int, default=1)
    parser.add_argument("--out", default=None, help="output folder (default: runs/<timestamp>)")
    args = parser.parse_args(argv)

    import ray
    from ray.cluster_utils import Cluster

    from rnnlab.compare import run_compare

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": args.cpus_per_node})
    for _ in range(args.nodes - 1):
        cluster.add_node(num_cpus=args.cpus_per_node)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        # node id -> "node k (head)" in the order the cluster lists them
        labels = {}
        for k, node in enumerate(ray.nodes(), 1):
            head = any(r.startswith("node:__internal_head__") for r in node["Resources"])
            labels[node["NodeID"]] = f"node {k}{' (head)' if head else ''}"
        start = time.perf_counter()
        out = run_compare(args.preset, args.out, seeds=args.seeds, only=args.only,
                          ray=cluster.address, log=print)
        wall = time.perf_counter() - start
    finally:
        ray.shutdown()
        cluster.shutdown()

    tasks = out["results"]["tasks"]
    print(f"\n{'task':<28} {'ran on':<16} {'seconds':>8}")
    for t in tasks:
        key = f"{t['experiment']}-seed{t['seed']}"
        where = "driver (timing)" if t["node"] == "driver" else labels.get(t["node"], t["node"])
        print(f"{key:<28} {where:<16} {t['seconds']:8.1f}")
    per_node = collections.Counter(labels.get(t["node"], "driver (timing)") for t in tasks)
    print("\ntasks per node: " + ", ".join(f"{k}: {v}" for k, v in sorted(per_node.items())))
    print(f"{args.nodes} nodes × {args.cpus_per_node} CPU; preset {args.preset}, "
          f"{len(out['results']['config']['seeds'])} seeds; wall time {wall:.1f} s; "
          f"report: {out['report']['markdown']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
