"""The service as a Ray Serve application: its deployments, their scorer and settings.
May import every other reward_server package; of those, only cli.py imports it.

One address in front of HTTP ingress replicas (rules) and model replicas (self-certainty)
on any number of machines.

``shop-r1-reward ray-serve`` starts it (``cli``); ``app.app_builder`` is the import path
for Serve config files and KubeRay. Modules: ``settings`` (no Ray import), ``routing``
(prompt keys), ``deployments``, ``remote_scorer`` (the ingress's scorer), ``launch``
(checks, deploy, drain), ``replica_metrics``, ``wire``. Everything that imports Ray is
imported only when used, so the rest of the package works without the ``ray`` extra.
See docs/SCALING.md.
"""
