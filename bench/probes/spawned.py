"""The Python program of the spawn row: creates the file named by its argument as soon
as its own code runs, then sleeps (and honours SIGTERM). Not imported by the harness."""
import os
import sys
import time

os.close(os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600))
time.sleep(100000)
