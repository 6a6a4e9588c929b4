"""Training and evaluating a Shop-R1 policy on the reward service: SFT, then GRPO (TRL),
greedy evaluation, and the paper's table in miniature. Imports ``shop_task``, the client
and the trainer adapters, and TRL/torch (the ``train`` extra); never the server's HTTP
layer: GRPO talks to a running service like any trainer does.
"""
