"""`hotremove kernel fuzz`: seeded random scenarios run in the simulator and in real kernels."""
