"""fs/: what the kernel keeps under fs/ — jbd2 (the journal that holds data buffers) and the
flusher's writeback of dirty inodes (``fs_writeback``)."""
