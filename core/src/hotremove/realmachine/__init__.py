"""Real machines: read a live system's page flags, predict which memory blocks can go.

``snapshot`` reads /proc/kpageflags, /proc/kpagecount and /sys/devices/system/memory into a
file (``kpageflags``: the bits); ``classes`` classifies its frames; ``synthesize`` builds a
simulated machine from snapshot blocks; ``probe`` offlines one unit of each kind of page on a
machine of its own; ``plan`` predicts every block's offline; ``plot`` draws the plan; ``run``
offlines synthesized blocks with the engine (``hotremove run --snapshot``).
"""
