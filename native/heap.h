// How the allocator gives memory back. MLX's CPU backend allocates every buffer with malloc and
// keeps no cache of its own, so glibc's free lists are its cache. Buffers under glibc's mmap
// threshold (which grows to 32 MB as large blocks are freed) come from heaps that give little
// back: loading a 7B model (thousands of 1–30 MB weights and repack buffers, the JS ones freed
// whenever V8 collects them) left the process 1.6 GB above what MLX held. Elsewhere than glibc
// these do nothing.
#pragma once

namespace mlxq {

/**
 * From now until end_bulk_load, every block of 1 MB or more gets its own mapping, returned to the
 * system when freed, whenever that is.
 */
void begin_bulk_load();

/** Blocks of 8 MB or more get their own mapping from now on (see heap.cc); then release_free_heap. */
void end_bulk_load();

/** Returns the allocator's free pages to the system (malloc_trim). */
void release_free_heap();

}  // namespace mlxq
