"""The package version, and the Resque version our process titles claim (WIRE §6.4)."""

__version__ = "0.1.0"

#: Ruby's pruner keeps a process whose ``ps`` line matches ``[r]esque-[0-9]`` (WIRE §3.5), so
#: the title starts ``resque-<digits>``; we name the Resque version whose wire we speak.
RESQUE_VERSION = "3.0.0"
