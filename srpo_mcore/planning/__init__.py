"""Planning a run before it starts: the dry-run memory planner (``pretrain_srpo.py --dry-run`` and
``python -m srpo_mcore.planning``). Imports only the config: no GPU, Megatron or vLLM is needed."""
