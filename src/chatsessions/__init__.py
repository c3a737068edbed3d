"""chatsessions: keeps conversations, cuts them into chat sessions, serves them over HTTP."""

__version__ = "0.1.0"
__all__ = ["__version__"]
