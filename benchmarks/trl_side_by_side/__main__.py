from benchmarks.trl_side_by_side.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
