"""`python -m pigeon` runs the command-line interface."""

from pigeon.cli.main import main

raise SystemExit(main())
