"""Test-session set-up: the CPU platform environment (Triton interpreter etc.) before anything imports it."""

from srpo_mcore.platform import configure_process_environment

configure_process_environment()
