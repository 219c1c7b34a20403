"""Orchestration policies: placement, migration (and later offload).

Every policy follows one small contract and is registered by name; a user policy is
loaded by import path (``mypkg.mymod:my_policy``) and is treated exactly like a built-in.
"""
