"""Print _config.yml with the notebook execution mode replaced (used by ``make test-book``).

Usage: ``python tests/book_config.py --execute off > other_config.yml``
"""

import argparse
import pathlib
import re

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--execute", default="off", choices=["off", "force", "cache", "auto"])
args = parser.parse_args()
text = (pathlib.Path(__file__).parent.parent / "_config.yml").read_text()
new, count = re.subn(r"(?m)^(\s*execute_notebooks:\s*).*$", rf'\g<1>"{args.execute}"', text)
if count != 1:
    raise SystemExit("_config.yml must set execute.execute_notebooks exactly once")
print(new, end="")
