"""``python -m benchmarks NAME [--tiny] [options]``; ``python -m benchmarks`` lists the benchmarks."""

from benchmarks._harness import main

if __name__ == "__main__":  # not when a spawned or forkserver process imports the main module
    main()
