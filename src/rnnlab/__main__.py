import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while the (small) CLI module itself is imported
    print("rnnlab: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
