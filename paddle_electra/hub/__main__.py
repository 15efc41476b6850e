"""`python -m paddle_electra.hub serving start ...`: the hub modules' server, paddle_electra.serving."""
if __name__ == "__main__":
    import sys

    from .. import runtime
    from ..serving import main

    runtime.configure_process()  # an entry point: the process is ours (paddle-electra serve does the same)
    sys.exit(main())
