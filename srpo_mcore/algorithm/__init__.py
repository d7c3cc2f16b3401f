"""The SRPO algorithm core, free of Megatron and vLLM (torch and numpy only).

- ``advantages``: GRPO group-normalised advantages, overlong responses zeroed, zero-advantage groups counted.
- ``history_resampling``: SRPO's History Resampling (drop prompts whose rollouts were all correct).
- ``sampling``: prompt samplers (vanilla, History Resampling, DAPO dynamic sampling) with exact resume.
- ``stages``: the two-stage schedule (math, then math + code) and its switch event.
- ``reflection``: recheck / hesitation / exploration phrase statistics of responses.
"""
