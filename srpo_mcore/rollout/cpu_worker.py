"""vLLM-CPU worker whose shared-memory segment names are unique to the job.

vLLM-CPU names the shared-memory segments of a multi-rank TP group ``<ident>-tp:0-[0-1]-cpushm_<rank>``, where
``<ident>`` comes from the worker's distributed init method; the external launcher fixes that to ``env://``, so
every job on a machine uses the same names and two concurrent jobs collide (``create shm in SHMManager failed.
errno: 17``). This worker hands vLLM a ``file://`` init method whose last component is a job-unique tag. The
method is otherwise unused: the torchrun process group already exists, so vLLM never initialises from it.
Selected by :class:`~srpo_mcore.rollout.engine.RolloutEngine` on CPU through ``LLM(worker_cls=...)``; the engine
runs in this process (external launcher), so the tag is passed through a module attribute.
"""

from __future__ import annotations

from vllm.v1.worker.cpu_worker import CPUWorker

SHM_TAG: str | None = None  # set by RolloutEngine before it builds the engine; identical on every rank of the job


class JobScopedCPUWorker(CPUWorker):
    def init_device(self) -> None:
        if SHM_TAG:
            self.distributed_init_method = f"file:///{SHM_TAG}"
        super().init_device()
