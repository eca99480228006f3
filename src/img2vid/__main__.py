"""`python -m img2vid` runs the CLI."""

from img2vid.cli import main

raise SystemExit(main())
