"""mailcli: schedule and deliver SMS-style mailing campaigns from the terminal."""

__version__ = "0.1.0"
