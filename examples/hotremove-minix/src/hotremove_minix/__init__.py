"""hotremove-minix: a third-party hotremove plugin — minix v3 images and minix_aops per
kernel (see README.md)."""

__version__ = "0.2.0"
