"""omnibot core: conversation model, storage, runtime, app wiring and CLI."""

__version__ = "0.1.0"
