"""hotremove plugin package: the vfat (FAT12/16/32) filesystem type and ``fat_aops``."""
