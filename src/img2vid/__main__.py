"""`python -m img2vid` runs the CLI."""

from img2vid.interfaces.cli.app import main

raise SystemExit(main())
