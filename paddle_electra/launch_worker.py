"""The script that paddle.distributed.launch starts in each process for `paddle-electra COMMAND
--nproc-per-node N` (distributed.relaunch; the launcher runs a file, not a module): the same as
`paddle-electra COMMAND ARGS...`.

    paddle-electra pretrain --nproc-per-node 2 --data-dir D --model chinese-electra-small --output-dir O
    paddle-electra finetune --nproc-per-node 2 --data-dir D --model-name M --hparams H
"""
import sys

if __name__ == "__main__":
    # run as a script, sys.path[0] is this folder, whose config.py, tasks.py, ... must not shadow
    # top-level modules of those names
    del sys.path[0]
    from paddle_electra.cli import main
    sys.exit(main(sys.argv[1:]))
