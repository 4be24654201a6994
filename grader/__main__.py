import sys

if sys.version_info < (3, 10):
    sys.exit(f"grader: the course needs Python 3.10 or newer, this is {sys.version.split()[0]}: "
             "install one from https://www.python.org/downloads/")

from grader.cli import main

sys.exit(main())
