#include "file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace mlxq {
namespace {

std::runtime_error errno_error(const std::string& path, const char* what) {
  return std::runtime_error(path + ": " + what + ": " + std::strerror(errno));
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

uint64_t regular_file_size(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw errno_error(path, "cannot open");
  if (!S_ISREG(st.st_mode)) throw std::runtime_error(path + ": not a regular file");
  return static_cast<uint64_t>(st.st_size);
}

void read_exact(const std::string& path, uint64_t offset, size_t length, uint8_t* out) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) throw errno_error(path, "cannot open");
  size_t done = 0;
  while (done < length) {
    ssize_t n = ::pread(fd.get(), out + done, length - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw errno_error(path, "read failed");
    }
    if (n == 0) {
      throw std::runtime_error(path + ": file ended at byte " + std::to_string(offset + done) + ", expected " +
                               std::to_string(length) + " bytes from offset " + std::to_string(offset));
    }
    done += static_cast<size_t>(n);
  }
}

void fsync_path(const std::string& path, bool directory) {
  Fd fd(::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC));
  if (fd.get() < 0) throw errno_error(path, "cannot open for fsync");
  if (::fsync(fd.get()) != 0) throw errno_error(path, "fsync failed");
}

std::string parent_dir(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string temp_name_beside(const std::string& path, const std::string& suffix) {
  static std::atomic<uint64_t> counter{0};
  auto slash = path.find_last_of('/');
  std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  return dir + "." + base + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + suffix;
}

}  // namespace mlxq
