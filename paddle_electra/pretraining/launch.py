"""The script that paddle.distributed.launch starts in each process for `paddle-electra pretrain
--nproc-per-node N` (the launcher runs a file, not a module): the same as `paddle-electra pretrain`.

    paddle-electra pretrain --nproc-per-node 2 --data-dir D --model chinese-electra-small --output-dir O
"""
import sys

if __name__ == "__main__":
    # run as a script, sys.path[0] is this folder, whose data.py, metrics.py, ... must not shadow
    # top-level modules of those names
    del sys.path[0]
    from paddle_electra.cli import main
    sys.exit(main(["pretrain", *sys.argv[1:]]))
