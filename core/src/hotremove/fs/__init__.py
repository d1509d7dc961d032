"""fs/: what the kernel keeps under fs/ — jbd2 (the journal that holds data buffers), the
flusher's writeback of dirty inodes (``fs_writeback``), and :mod:`~hotremove.fs.fstype`, the
protocol a plugin implements to bring a whole filesystem type (images, block maps, checker,
reader, the a_ops per kernel, the guest's mount)."""
