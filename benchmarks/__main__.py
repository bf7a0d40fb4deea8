"""``python -m benchmarks NAME [--tiny] [options]``; ``python -m benchmarks`` lists the benchmarks."""

import sys

from benchmarks import _render
from benchmarks._harness import names, run


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"render": "write BENCHMARKS.md from the template and the result files (--check: only compare)",
                "readme": "write the README's demo numbers from a demo run"}
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m benchmarks NAME [--tiny] [options]   (NAME --help for its options)\n"
              f"benchmarks: {', '.join(names())}\n" + "\n".join(f"{c}: {h}" for c, h in commands.items()))
        return
    if argv[0] in commands:
        getattr(_render, f"{argv[0]}_main")(argv[1:])
        return
    if argv[0] not in names():
        raise SystemExit(f"no benchmark {argv[0]!r}; one of: {', '.join(names())}")
    path, data = run(argv[0], argv[1:])
    print(f"\n{_render.blocks_markdown(data['blocks'])}\n\nresult: {path}", flush=True)


if __name__ == "__main__":  # not when a spawned or forkserver process imports the main module
    main()
