"""The real-kernel harness: boot Debian's Linux 5.10, 6.1, 6.12 and 7.2 under QEMU, replay a
scenario's workload in the guest, offline the scenario's memory blocks and report what the
kernel did.

``fetch`` gets a kernel and builds the generic initramfs; ``guest`` is the guest's side (the
generic ``/init`` and the per-run job); ``qemu`` runs the machine; ``run`` ties a scenario to a
guest run; ``console`` parses the guest's ``RK`` lines; ``diff`` compares with the simulator.
"""
