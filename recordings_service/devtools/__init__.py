"""Local development: demo data and simulated Africa's Talking calls, with their CLI commands.

Nothing in the service's request or callback path imports this package.
"""

import click

from .demo import seed_demo_command
from .simulation import simulate_call_command


def register_commands(group: click.Group) -> None:
    """Add the development commands (``seed-demo``, ``simulate-call``) to the ``recordings`` group."""
    group.add_command(seed_demo_command)
    group.add_command(simulate_call_command)
