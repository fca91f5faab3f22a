"""`python -m recdistill ...`, the same as the `recdistill` command; what `torchrun -m recdistill train ...` runs."""

from recdistill.cli import main

if __name__ == "__main__":
    main()
