"""The `img2vid` command line: the argparse app (app.py) and one module per command."""
