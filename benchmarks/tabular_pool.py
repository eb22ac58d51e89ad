"""MMoE against the single-task MLP over several runs of the tabular suite (other splits,
other network seeds): per task, on how many runs MMoE scores at or above the single-task MLP,
the mean and standard deviation of the difference; per run, the count of tasks.

One run's count moves by several tasks with nothing but the seeds; pooled, a task that MMoE
wins or loses on most runs can be told from a tie.

    python benchmarks/tabular_pool.py docs/tabular/suite.json docs/tabular/split1.json \\
        docs/tabular/split2.json docs/tabular/seeds/*.json --out docs/tabular/seeds/pool.md
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def differences(runs: dict[str, dict], split: str) -> dict[tuple[str, str], dict[str, float]]:
    """(table, task) -> {run: MMoE's score less the single-task MLP's} on ``split``."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for name, results in runs.items():
        for table, res in results["tables"].items():
            for task, row in res["tasks"].items():
                if "mmoe" in row and "mmoe_single_task" in row:
                    out.setdefault((table, task), {})[name] = (
                        row["mmoe"][split] - row["mmoe_single_task"][split])
    return out


def report(runs: dict[str, dict]) -> str:
    lines = []
    for split in ("valid", "test"):
        diffs = differences(runs, split)
        lines += [f"### {split}", "",
                  "| table | task | runs at or above | mean difference | sd |",
                  "|---|---|---:|---:|---:|"]
        for (table, task), d in diffs.items():
            wins = sum(v >= 0 for v in d.values())
            sd = statistics.stdev(d.values()) if len(d) > 1 else float("nan")
            lines.append(f"| {table} | {task} | {wins} / {len(d)} | "
                         f"{statistics.mean(d.values()):+.4f} | {sd:.4f} |")
        per_run = {name: sum(d[name] >= 0 for d in diffs.values() if name in d)
                   for name in runs if any(name in d for d in diffs.values())}
        pooled = sum(per_run.values())
        total = sum(len(d) for d in diffs.values())
        mean_up = sum(statistics.mean(d.values()) >= 0 for d in diffs.values())
        lines += ["", "- tasks at or above per run: "
                  + ", ".join(f"{Path(n).stem} {c}" for n, c in per_run.items()),
                  f"- pooled: {pooled} of {total} task-runs ({pooled / total:.0%}); tasks whose "
                  f"mean difference is at or above zero: {mean_up} of {len(diffs)}", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", help="results files of benchmarks/tabular_suite.py")
    ap.add_argument("--out", help="Markdown file (printed either way)")
    args = ap.parse_args()
    runs = {}
    for path in args.results:
        try:
            runs[path] = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            ap.error(f"{path}: not a results file of tabular_suite.py ({e})")
    text = report(runs)
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
