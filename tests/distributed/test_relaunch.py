"""CLIs that start their own ranks (eval, convert) relaunch themselves under torchrun: the program must get its
argv verbatim, even flags that abbreviate a torchrun option (eval's ``--nproc`` vs torchrun's
``--nproc-per-node``: argparse failed it as ambiguous before torchrun's options were ended with ``--``)."""

import json
import subprocess

import pytest

from srpo_mcore.distributed import free_local_port, torchrun_argv
from tests.torchrun import REPO_ROOT

pytestmark = pytest.mark.distributed


def test_program_gets_its_argv_verbatim(tmp_path):
    (tmp_path / "echo_argv.py").write_text("import json, os, sys\n"
                                           "print(json.dumps([os.environ['WORLD_SIZE'], sys.argv[1:]]))\n")
    argv = ["--nproc", "1", "--master", "x", "--max-tokens", "4", "--", "--tail"]
    proc = subprocess.run(torchrun_argv("echo_argv", argv, 1, free_local_port()), cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == ["1", argv]
