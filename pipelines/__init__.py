"""I/O and orchestration: catalog readers, the per-row worker, the build runner and its engines,
the demo catalog; and the front ends on top (the commands `cli_*.py`, terminal progress,
quickstart, web app), which nothing but the CLI and each other imports."""
