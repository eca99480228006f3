"""Put this folder on PYTHONPATH to run img2vid as if some packages were not installed:
IMG2VID_TEST_WITHOUT=huggingface_hub,diffusers makes importing them (and finding them with
importlib.util.find_spec) fail exactly as on a machine without them."""

import os
import sys

_BLOCKED = {name.strip() for name in os.environ.get("IMG2VID_TEST_WITHOUT", "").split(",")
            if name.strip()}


class _NotInstalled:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in _BLOCKED:
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
        return None


if _BLOCKED:
    sys.meta_path.insert(0, _NotInstalled())
