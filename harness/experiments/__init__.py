"""One job pipeline: `reproduce`, `run` and `matrix` plan jobs and hand them to one executor layer.

jobs.py       Job (one arm and seed of a recipe, picklable), run_key, run_job (reuse, run, record)
executors.py  in-process, local processes, Ray: the same outcomes, in completion order
session.py    one parent MLflow run per command, dead runs marked KILLED, SIGTERM/SIGINT to exit codes
reproduce.py  a recipe's arms over seeds -> jobs -> the results table (`reproduce`, `run`)
"""
