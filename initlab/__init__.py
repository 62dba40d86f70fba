"""initlab: a lab for how weight initialization and activation functions shape learning."""

__version__ = "0.1.0"
