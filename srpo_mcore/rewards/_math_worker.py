"""A math-verify worker process: ``python -m srpo_mcore.rewards._math_worker MEMORY_MB TIMEOUT_S``.

Reads JSON lines ``{"id": n, "gold": "...", "answer": "..."}`` on stdin and answers each with
``{"id": n, "ok": bool, "status": "..."}`` on its original stdout (fd 1 is pointed at stderr, so that
stray prints cannot corrupt the protocol). The first line it writes is ``{"ready": true}``.

math-verify's own timeouts (SIGALRM, whole seconds) stop most slow comparisons here; the parent's outer
deadline kills this process when they do not (C-level loops ignore signals). ``RLIMIT_AS`` caps memory.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
from functools import lru_cache


def main() -> None:
    memory_mb, timeout_s = int(sys.argv[1]), max(1, int(float(sys.argv[2])))
    limit = memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    logging.disable(logging.WARNING)  # math-verify logs every timeout and parse failure
    from math_verify import parse, verify

    @lru_cache(maxsize=4096)
    def parse_gold(gold: str):
        return parse("\\boxed{" + gold + "}", parsing_timeout=timeout_s)

    out.write('{"ready": true}\n')
    for line in sys.stdin:
        task = json.loads(line)
        ok, status = False, "ok"
        try:
            gold = parse_gold(task["gold"])
            answer = parse("\\boxed{" + task["answer"] + "}", parsing_timeout=timeout_s)
            if not gold:
                status = "unparsable_gold"
            elif not answer:
                status = "unparsable_answer"
            else:
                ok = bool(verify(gold, answer, timeout_seconds=timeout_s))
        except MemoryError:
            status = "memory_limit"
        except Exception as e:  # noqa: BLE001 - any failure scores 0
            status = f"error: {type(e).__name__}"
        out.write(json.dumps({"id": task["id"], "ok": ok, "status": status}) + "\n")


if __name__ == "__main__":
    main()
