// POSIX file helpers with errors that name the file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace mlxq {

/** Size of a regular file; throws std::runtime_error naming the path otherwise. */
uint64_t regular_file_size(const std::string& path);
/** Reads exactly `length` bytes at `offset` into `out`; throws naming the path on a short read. */
void read_exact(const std::string& path, uint64_t offset, size_t length, uint8_t* out);
/** fsyncs a file or directory; throws naming the path. */
void fsync_path(const std::string& path, bool directory);
/** A unique temporary name beside `path`, ending in `suffix`. */
std::string temp_name_beside(const std::string& path, const std::string& suffix);
std::string parent_dir(const std::string& path);

}  // namespace mlxq
