// fd module: memfd and seals, udmabuf, dma-buf sync, mmap as external ArrayBuffers, eventfd,
// AF_UNIX sockets with SCM_RIGHTS and readability watches on Node's loop. Each function is a
// thin wrapper around one system call; policy lives in native/fd.ts and plugin/dmabuf.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/dma-buf.h>
#include <linux/udmabuf.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common.h"

namespace guestfb {
namespace {

// Fds accepted per received message; more means a hostile or confused peer.
constexpr size_t kMaxReceivedFds = 32;
constexpr size_t kMaxSentFds = 253;  // SCM_MAX_FD
constexpr size_t kMaxRecvBytes = 1 << 24;

bool BoolArg(const Napi::Value& value, bool fallback) {
  if (value.IsUndefined()) return fallback;
  if (!value.IsBoolean()) ThrowTypeError(value.Env(), "expected a boolean");
  return value.As<Napi::Boolean>().Value();
}

std::string StringArg(const Napi::Value& value, const char* what) {
  if (!value.IsString()) ThrowTypeError(value.Env(), std::string(what) + " must be a string");
  return value.As<Napi::String>().Utf8Value();
}

Napi::Uint8Array BytesArg(const Napi::Value& value, const char* what) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    ThrowTypeError(value.Env(), std::string(what) + " must be a Uint8Array");
  }
  return value.As<Napi::Uint8Array>();
}

// --- memfd, seals, plain fd calls ---------------------------------------------------------

Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  std::string name = StringArg(info[0], "name");
  unsigned flags = MFD_CLOEXEC | (BoolArg(info[1], true) ? MFD_ALLOW_SEALING : 0);
  int fd = memfd_create(name.c_str(), flags);
  if (fd < 0) ThrowErrno(info.Env(), "memfd_create", errno);
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value AddSeals(const Napi::CallbackInfo& info) {
  int fd = FdArg(info[0], "fd");
  uint64_t seals = SizeArg(info[1], "seals");
  if (fcntl(fd, F_ADD_SEALS, static_cast<int>(seals)) < 0) ThrowErrno(info.Env(), "fcntl", errno);
  return info.Env().Undefined();
}

Napi::Value GetSeals(const Napi::CallbackInfo& info) {
  int seals = fcntl(FdArg(info[0], "fd"), F_GET_SEALS);
  if (seals < 0) ThrowErrno(info.Env(), "fcntl", errno);
  return Napi::Number::New(info.Env(), seals);
}

Napi::Value Ftruncate(const Napi::CallbackInfo& info) {
  int fd = FdArg(info[0], "fd");
  uint64_t size = SizeArg(info[1], "size");
  if (ftruncate(fd, static_cast<off_t>(size)) < 0) ThrowErrno(info.Env(), "ftruncate", errno);
  return info.Env().Undefined();
}

Napi::Value FdSize(const Napi::CallbackInfo& info) {
  off_t size = lseek(FdArg(info[0], "fd"), 0, SEEK_END);
  if (size < 0) ThrowErrno(info.Env(), "lseek", errno);
  return Napi::Number::New(info.Env(), static_cast<double>(size));
}

// fstat: the size and whether fd is a regular file (memfds, hugetlbfs and tmpfs files are).
Napi::Value FdStat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct stat status = {};
  if (fstat(FdArg(info[0], "fd"), &status) < 0) ThrowErrno(env, "fstat", errno);
  Napi::Object result = Napi::Object::New(env);
  result.Set("size", Napi::Number::New(env, static_cast<double>(status.st_size)));
  result.Set("regular", Napi::Boolean::New(env, S_ISREG(status.st_mode)));
  return result;
}

Napi::Value Pread(const Napi::CallbackInfo& info) {
  int fd = FdArg(info[0], "fd");
  Napi::Uint8Array target = BytesArg(info[1], "target");
  uint64_t position = SizeArg(info[2], "position");
  ssize_t n;
  do {
    n = pread(fd, target.Data(), target.ByteLength(), static_cast<off_t>(position));
  } while (n < 0 && errno == EINTR);
  if (n < 0) ThrowErrno(info.Env(), "pread", errno);
  return Napi::Number::New(info.Env(), static_cast<double>(n));
}

Napi::Value Pwrite(const Napi::CallbackInfo& info) {
  int fd = FdArg(info[0], "fd");
  Napi::Uint8Array source = BytesArg(info[1], "source");
  uint64_t position = SizeArg(info[2], "position");
  ssize_t n;
  do {
    n = pwrite(fd, source.Data(), source.ByteLength(), static_cast<off_t>(position));
  } while (n < 0 && errno == EINTR);
  if (n < 0) ThrowErrno(info.Env(), "pwrite", errno);
  return Napi::Number::New(info.Env(), static_cast<double>(n));
}

Napi::Value Dup(const Napi::CallbackInfo& info) {
  int fd = fcntl(FdArg(info[0], "fd"), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(info.Env(), "fcntl", errno);
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  // Linux releases the fd even when close reports EINTR: never retry.
  if (close(FdArg(info[0], "fd")) < 0 && errno != EINTR) ThrowErrno(info.Env(), "close", errno);
  return info.Env().Undefined();
}

Napi::Value OpenFdCount(const Napi::CallbackInfo& info) {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) ThrowErrno(info.Env(), "opendir", errno);
  int count = 0;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') count++;
  }
  closedir(dir);
  // The directory stream's own fd was listed too.
  return Napi::Number::New(info.Env(), count - 1);
}

// --- udmabuf and dma-buf ------------------------------------------------------------------

Napi::Value UdmabufOpen(const Napi::CallbackInfo& info) {
  std::string path = info[0].IsUndefined() ? "/dev/udmabuf" : StringArg(info[0], "path");
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) ThrowErrno(info.Env(), "open", errno);
  return Napi::Number::New(info.Env(), fd);
}

struct RangeValues {
  int memfd;
  uint64_t offset;
  uint64_t size;
};

RangeValues RangeArg(const Napi::Value& value) {
  if (!value.IsObject()) ThrowTypeError(value.Env(), "a range must be {memfd, offset, size}");
  Napi::Object range = value.As<Napi::Object>();
  return {FdArg(range.Get("memfd"), "range.memfd"), SizeArg(range.Get("offset"), "range.offset"),
          SizeArg(range.Get("size"), "range.size")};
}

Napi::Value UdmabufCreate(const Napi::CallbackInfo& info) {
  int device = FdArg(info[0], "deviceFd");
  RangeValues range = RangeArg(info[1]);
  udmabuf_create create = {};
  create.memfd = static_cast<__u32>(range.memfd);
  create.flags = UDMABUF_FLAGS_CLOEXEC;
  create.offset = range.offset;
  create.size = range.size;
  int fd = ioctl(device, UDMABUF_CREATE, &create);
  if (fd < 0) ThrowErrno(info.Env(), "ioctl(UDMABUF_CREATE)", errno);
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value UdmabufCreateList(const Napi::CallbackInfo& info) {
  int device = FdArg(info[0], "deviceFd");
  if (!info[1].IsArray()) ThrowTypeError(info.Env(), "ranges must be an array");
  Napi::Array ranges = info[1].As<Napi::Array>();
  uint32_t count = ranges.Length();
  // The header and the items are both 8-byte aligned; build them in one u64 buffer.
  static_assert(sizeof(udmabuf_create_list) % 8 == 0 && sizeof(udmabuf_create_item) % 8 == 0);
  size_t bytes = sizeof(udmabuf_create_list) + size_t{count} * sizeof(udmabuf_create_item);
  std::vector<uint64_t> storage(bytes / 8, 0);
  auto* list = reinterpret_cast<udmabuf_create_list*>(storage.data());
  list->flags = UDMABUF_FLAGS_CLOEXEC;
  list->count = count;
  for (uint32_t i = 0; i < count; i++) {
    RangeValues range = RangeArg(ranges.Get(i));
    list->list[i].memfd = static_cast<__u32>(range.memfd);
    list->list[i].offset = range.offset;
    list->list[i].size = range.size;
  }
  int fd = ioctl(device, UDMABUF_CREATE_LIST, list);
  if (fd < 0) ThrowErrno(info.Env(), "ioctl(UDMABUF_CREATE_LIST)", errno);
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value DmabufSync(const Napi::CallbackInfo& info) {
  int fd = FdArg(info[0], "fd");
  dma_buf_sync sync = {};
  sync.flags = SizeArg(info[1], "flags");
  int result;
  do {
    result = ioctl(fd, DMA_BUF_IOCTL_SYNC, &sync);
  } while (result < 0 && (errno == EINTR || errno == EAGAIN));
  if (result < 0) ThrowErrno(info.Env(), "ioctl(DMA_BUF_IOCTL_SYNC)", errno);
  return info.Env().Undefined();
}

// --- mmap as external ArrayBuffers --------------------------------------------------------

// One live mapping. The ArrayBuffer's finalizer and munmap() race for it: whichever comes first
// unmaps; the finalizer always frees the record. Addresses are process-wide, so one registry
// (address -> record) serves every env; an address leaves it when unmapped, before it can be
// reused by a later mmap.
struct Mapping {
  void* address;
  size_t length;
  bool unmapped;
};

std::mutex mappings_mutex;
std::unordered_map<void*, Mapping*>& Mappings() {
  static auto* mappings = new std::unordered_map<void*, Mapping*>();
  return *mappings;
}

void FinalizeMapping(napi_env /*env*/, void* /*data*/, void* hint) {
  auto* mapping = static_cast<Mapping*>(hint);
  {
    std::lock_guard<std::mutex> lock(mappings_mutex);
    if (!mapping->unmapped) {
      Mappings().erase(mapping->address);
      munmap(mapping->address, mapping->length);
    }
  }
  delete mapping;
}

Napi::Value Mmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info[0], "fd");
  uint64_t offset = SizeArg(info[1], "offset");
  uint64_t length = SizeArg(info[2], "length");
  bool writable = BoolArg(info[3], false);
  if (length == 0) ThrowRangeError(env, "length must be positive");
  int protection = PROT_READ | (writable ? PROT_WRITE : 0);
  void* address = mmap(nullptr, length, protection, MAP_SHARED, fd, static_cast<off_t>(offset));
  if (address == MAP_FAILED) ThrowErrno(env, "mmap", errno);
  auto* mapping = new Mapping{address, static_cast<size_t>(length), false};
  {
    std::lock_guard<std::mutex> lock(mappings_mutex);
    Mappings()[address] = mapping;
  }
  napi_value buffer;
  napi_status status = napi_create_external_arraybuffer(env, address, mapping->length,
                                                        FinalizeMapping, mapping, &buffer);
  if (status != napi_ok) {
    FinalizeMapping(env, nullptr, mapping);
    NAPI_THROW_IF_FAILED(env, status, Napi::Value());
  }
  return Napi::Value(env, buffer);
}

Napi::Value Munmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArrayBuffer()) ThrowTypeError(env, "munmap expects the mapped ArrayBuffer");
  Napi::ArrayBuffer buffer = info[0].As<Napi::ArrayBuffer>();
  if (buffer.IsDetached()) return env.Undefined();
  void* address = buffer.Data();
  size_t length = 0;
  {
    // Claim the mapping before detaching: the finalizer may run during Detach().
    std::lock_guard<std::mutex> lock(mappings_mutex);
    auto found = Mappings().find(address);
    if (found == Mappings().end() || found->second->length != buffer.ByteLength())
      ThrowTypeError(env, "munmap expects an ArrayBuffer returned by mmap");
    length = found->second->length;
    found->second->unmapped = true;
    Mappings().erase(found);
  }
  // Detach first so no JS view can touch the pages once they are gone.
  buffer.Detach();
  if (munmap(address, length) < 0) ThrowErrno(env, "munmap", errno);
  return env.Undefined();
}

// --- eventfd ------------------------------------------------------------------------------

Napi::Value Eventfd(const Napi::CallbackInfo& info) {
  uint64_t initial = info[0].IsUndefined() ? 0 : SizeArg(info[0], "initial");
  if (initial > UINT32_MAX) ThrowRangeError(info.Env(), "initial must fit in 32 bits");
  int fd = eventfd(static_cast<unsigned>(initial), EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) ThrowErrno(info.Env(), "eventfd", errno);
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value EventfdWrite(const Napi::CallbackInfo& info) {
  int fd = FdArg(info[0], "fd");
  uint64_t value = info[1].IsUndefined() ? 1 : SizeArg(info[1], "value");
  ssize_t n;
  do {
    n = write(fd, &value, sizeof(value));
  } while (n < 0 && errno == EINTR);
  if (n < 0) ThrowErrno(info.Env(), "write", errno);
  return info.Env().Undefined();
}

Napi::Value EventfdRead(const Napi::CallbackInfo& info) {
  int fd = FdArg(info[0], "fd");
  uint64_t value = 0;
  ssize_t n;
  do {
    n = read(fd, &value, sizeof(value));
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno != EAGAIN) ThrowErrno(info.Env(), "read", errno);
  return Napi::Number::New(info.Env(), n < 0 ? 0 : static_cast<double>(value));
}

// --- AF_UNIX ------------------------------------------------------------------------------

void SetNonBlocking(Napi::Env env, int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, "fcntl", err);
  }
}

sockaddr_un UnixAddress(Napi::Env env, const std::string& path) {
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path) || path.find('\0') != path.npos)
    ThrowRangeError(env, "socket path must be 1-107 bytes without NUL");
  memcpy(address.sun_path, path.data(), path.size());
  return address;
}

Napi::Value Socketpair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int type = SOCK_STREAM | SOCK_CLOEXEC | (BoolArg(info[0], true) ? SOCK_NONBLOCK : 0);
  int fds[2];
  if (socketpair(AF_UNIX, type, 0, fds) < 0) ThrowErrno(env, "socketpair", errno);
  Napi::Array pair = Napi::Array::New(env, 2);
  pair.Set(0u, Napi::Number::New(env, fds[0]));
  pair.Set(1u, Napi::Number::New(env, fds[1]));
  return pair;
}

Napi::Value UnixListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  sockaddr_un address = UnixAddress(env, StringArg(info[0], "path"));
  uint64_t backlog = info[1].IsUndefined() ? 16 : SizeArg(info[1], "backlog");
  if (backlog > 4096) ThrowRangeError(env, "backlog must be at most 4096");
  bool has_mode = !info[2].IsUndefined();
  uint64_t mode = has_mode ? SizeArg(info[2], "mode") : 0;
  if (mode > 07777) ThrowRangeError(env, "mode must be at most 07777");
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) ThrowErrno(env, "socket", errno);
  // bind() creates the socket file with the socket inode's mode minus the umask: set it first,
  // so the file never exists with wider permissions than asked for.
  if (has_mode && fchmod(fd, static_cast<mode_t>(mode)) < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, "fchmod", err);
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, "bind", err);
  }
  if (listen(fd, static_cast<int>(backlog)) < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, "listen", err);
  }
  return Napi::Number::New(env, fd);
}

Napi::Value UnixAccept(const Napi::CallbackInfo& info) {
  int fd;
  do {
    fd = accept4(FdArg(info[0], "listenFd"), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0 && errno != EAGAIN) ThrowErrno(info.Env(), "accept4", errno);
  return Napi::Number::New(info.Env(), fd < 0 ? -1 : fd);
}

Napi::Value UnixConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  sockaddr_un address = UnixAddress(env, StringArg(info[0], "path"));
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(env, "socket", errno);
  int result;
  do {
    result = connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  } while (result < 0 && errno == EINTR);
  if (result < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, "connect", err);
  }
  SetNonBlocking(env, fd);
  return Napi::Number::New(env, fd);
}

// A non-blocking connect() to a socket path, closed at once: the errno name of connect ("OK"
// when it connected). EAGAIN means a live listener with a full backlog; ECONNREFUSED a stale file.
Napi::Value UnixProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  sockaddr_un address = UnixAddress(env, StringArg(info[0], "path"));
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) ThrowErrno(env, "socket", errno);
  int result;
  do {
    result = connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  } while (result < 0 && errno == EINTR);
  int err = result < 0 ? errno : 0;
  close(fd);
  return Napi::String::New(env, err == 0 ? "OK" : ErrnoName(err));
}

// getgrnam_r: the gid of a group name, or null when there is no such group.
Napi::Value GroupId(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = StringArg(info[0], "name");
  std::vector<char> buffer(1024);
  for (;;) {
    group entry = {};
    group* found = nullptr;
    int err = getgrnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found);
    if (err == ERANGE && buffer.size() < (1u << 20)) {
      buffer.resize(buffer.size() * 4);
      continue;
    }
    if (err != 0) ThrowErrno(env, "getgrnam_r", err);
    if (found == nullptr) return env.Null();
    return Napi::Number::New(env, found->gr_gid);
  }
}

// SO_PEERCRED of a connected AF_UNIX socket: the peer's pid, uid and gid at connect time.
Napi::Value PeerCredentials(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ucred credentials = {};
  socklen_t length = sizeof(credentials);
  if (getsockopt(FdArg(info[0], "fd"), SOL_SOCKET, SO_PEERCRED, &credentials, &length) < 0)
    ThrowErrno(env, "getsockopt", errno);
  Napi::Object result = Napi::Object::New(env);
  result.Set("pid", Napi::Number::New(env, credentials.pid));
  result.Set("uid", Napi::Number::New(env, credentials.uid));
  result.Set("gid", Napi::Number::New(env, credentials.gid));
  return result;
}

// SO_DOMAIN and SO_TYPE of a socket (ENOTSOCK for anything else): checks an inherited fd.
Napi::Value SocketKind(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info[0], "fd");
  int domain = 0;
  int type = 0;
  socklen_t length = sizeof(domain);
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &length) < 0)
    ThrowErrno(env, "getsockopt", errno);
  length = sizeof(type);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) < 0) ThrowErrno(env, "getsockopt", errno);
  Napi::Object result = Napi::Object::New(env);
  result.Set("unix", Napi::Boolean::New(env, domain == AF_UNIX));
  result.Set("stream", Napi::Boolean::New(env, type == SOCK_STREAM));
  return result;
}

// Makes an inherited fd behave like the addon's own: O_NONBLOCK and FD_CLOEXEC.
Napi::Value AdoptFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info[0], "fd");
  int status = fcntl(fd, F_GETFL);
  if (status < 0 || fcntl(fd, F_SETFL, status | O_NONBLOCK) < 0) ThrowErrno(env, "fcntl", errno);
  int descriptor = fcntl(fd, F_GETFD);
  if (descriptor < 0 || fcntl(fd, F_SETFD, descriptor | FD_CLOEXEC) < 0)
    ThrowErrno(env, "fcntl", errno);
  return env.Undefined();
}

Napi::Value UnixSend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info[0], "fd");
  Napi::Uint8Array data = BytesArg(info[1], "data");
  std::vector<int> fds;
  if (!info[2].IsUndefined()) {
    if (!info[2].IsArray()) ThrowTypeError(env, "fds must be an array");
    Napi::Array array = info[2].As<Napi::Array>();
    if (array.Length() > kMaxSentFds) ThrowRangeError(env, "at most 253 fds per message");
    for (uint32_t i = 0; i < array.Length(); i++) fds.push_back(FdArg(array.Get(i), "fds[i]"));
  }
  if (data.ByteLength() == 0 && !fds.empty())
    ThrowRangeError(env, "fds need at least one byte of data to travel with");
  iovec vector = {data.Data(), data.ByteLength()};
  msghdr message = {};
  message.msg_iov = &vector;
  message.msg_iovlen = 1;
  std::vector<uint64_t> control;  // u64 elements keep the cmsghdr aligned
  if (!fds.empty()) {
    size_t space = CMSG_SPACE(fds.size() * sizeof(int));
    control.assign((space + 7) / 8, 0);
    message.msg_control = control.data();
    message.msg_controllen = space;
    cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
    memcpy(CMSG_DATA(header), fds.data(), fds.size() * sizeof(int));
  }
  ssize_t n;
  do {
    n = sendmsg(fd, &message, MSG_NOSIGNAL | MSG_DONTWAIT);  // never block the loop, even on
    // a blocking socket a peer handed over (QEMU's display channel)
  } while (n < 0 && errno == EINTR);
  if (n < 0) ThrowErrno(env, "sendmsg", errno);
  return Napi::Number::New(env, static_cast<double>(n));
}

Napi::Value UnixRecv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info[0], "fd");
  uint64_t max_bytes = SizeArg(info[1], "maxBytes");
  if (max_bytes == 0 || max_bytes > kMaxRecvBytes) ThrowRangeError(env, "maxBytes out of range");
  std::vector<uint8_t> data(max_bytes);
  iovec vector = {data.data(), data.size()};
  std::vector<uint64_t> control((CMSG_SPACE(kMaxReceivedFds * sizeof(int)) + 7) / 8, 0);
  msghdr message = {};
  message.msg_iov = &vector;
  message.msg_iovlen = 1;
  message.msg_control = control.data();
  message.msg_controllen = control.size() * 8;
  ssize_t n;
  do {
    n = recvmsg(fd, &message, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return env.Null();
  if (n < 0) ThrowErrno(env, "recvmsg", errno);

  std::vector<int> fds;
  for (cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr;
       header = CMSG_NXTHDR(&message, header)) {
    if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int received;
      memcpy(&received, CMSG_DATA(header) + i * sizeof(int), sizeof(int));
      fds.push_back(received);
    }
  }
  // A truncated control message means fds were dropped: keep none of them.
  bool truncated = (message.msg_flags & MSG_CTRUNC) != 0;
  if (truncated) {
    for (int received : fds) close(received);
    fds.clear();
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("data", Napi::Buffer<uint8_t>::Copy(env, data.data(), static_cast<size_t>(n)));
  Napi::Array fd_array = Napi::Array::New(env, fds.size());
  for (size_t i = 0; i < fds.size(); i++)
    fd_array.Set(static_cast<uint32_t>(i), Napi::Number::New(env, fds[i]));
  result.Set("fds", fd_array);
  result.Set("fdsTruncated", Napi::Boolean::New(env, truncated));
  return result;
}

// --- readability watches on Node's loop ---------------------------------------------------

// Owns one uv_poll_t. Lives until libuv's close callback, after stop() or env teardown. The JS
// stop function reaches it through a shared slot that is cleared when the watch closes.
struct Watch {
  napi_env env;
  uv_poll_t handle;
  Napi::FunctionReference callback;
  std::unique_ptr<Napi::AsyncContext> context;
  std::shared_ptr<Watch*> slot;
  bool closing = false;

  // JS references are released here, not in Close(), so a callback may stop its own watch.
  static void OnClose(uv_handle_t* handle) {
    auto* watch = static_cast<Watch*>(handle->data);
    watch->callback.Reset();
    watch->context.reset();
    delete watch;
  }

  void Close() {
    if (closing) return;
    closing = true;
    *slot = nullptr;
    uv_poll_stop(&handle);
    uv_close(reinterpret_cast<uv_handle_t*>(&handle), OnClose);
  }

  // At env teardown the close callback may never run with a live env: release now.
  static void OnEnvCleanup(void* arg) {
    auto* watch = static_cast<Watch*>(arg);
    watch->Close();
    watch->callback.Reset();
    watch->context.reset();
  }

  void Stop() {
    if (closing) return;
    napi_remove_env_cleanup_hook(env, OnEnvCleanup, this);
    Close();
  }

  static void OnPoll(uv_poll_t* handle, int status, int /*events*/) {
    auto* watch = static_cast<Watch*>(handle->data);
    if (watch->closing) return;
    Napi::Env env(watch->env);
    Napi::HandleScope scope(env);
    std::vector<napi_value> args;
    if (status < 0) {
      // libuv reports poll errors as negative errno; the watch cannot continue.
      args.push_back(ErrnoError(env, "uv_poll", -status).Value());
      watch->Stop();
    }
    try {
      watch->callback.MakeCallback(env.Global(), args, *watch->context);
    } catch (const Napi::Error& error) {
      // Surface it as an uncaught exception, like any other event-loop callback.
      napi_fatal_exception(env, error.Value());
    }
  }
};

Napi::Value WatchReadable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info[0], "fd");
  if (!info[1].IsFunction()) ThrowTypeError(env, "onReadable must be a function");
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) ThrowTypeError(env, "no event loop");
  auto watch = std::make_unique<Watch>();
  watch->env = env;
  int status = uv_poll_init(loop, &watch->handle, fd);
  if (status < 0) ThrowErrno(env, "uv_poll_init", -status);
  watch->handle.data = watch.get();
  watch->callback = Napi::Persistent(info[1].As<Napi::Function>());
  watch->context = std::make_unique<Napi::AsyncContext>(env, "guestfb.watchReadable");
  watch->slot = std::make_shared<Watch*>(watch.get());
  std::shared_ptr<Watch*> slot = watch->slot;
  Watch* raw = watch.release();
  status = uv_poll_start(&raw->handle, UV_READABLE, Watch::OnPoll);
  if (status < 0) {
    raw->Close();
    ThrowErrno(env, "uv_poll_start", -status);
  }
  napi_add_env_cleanup_hook(env, Watch::OnEnvCleanup, raw);
  return Napi::Function::New(env, [slot](const Napi::CallbackInfo& stop_info) {
    if (*slot != nullptr) (*slot)->Stop();
    return stop_info.Env().Undefined();
  });
}

// --- blocking poll with a timeout (for fences in tests and tools) -------------------------

Napi::Value PollReadable(const Napi::CallbackInfo& info) {
  int fd = FdArg(info[0], "fd");
  uint64_t timeout = SizeArg(info[1], "timeoutMs");
  if (timeout > INT32_MAX) ThrowRangeError(info.Env(), "timeoutMs too large");
  pollfd entry = {fd, POLLIN, 0};
  int result;
  do {
    result = poll(&entry, 1, static_cast<int>(timeout));
  } while (result < 0 && errno == EINTR);
  if (result < 0) ThrowErrno(info.Env(), "poll", errno);
  return Napi::Boolean::New(info.Env(), result > 0);
}

Napi::Value PageSize(const Napi::CallbackInfo& info) {
  long size = sysconf(_SC_PAGESIZE);
  if (size < 0) ThrowErrno(info.Env(), "sysconf", errno);
  return Napi::Number::New(info.Env(), static_cast<double>(size));
}

}  // namespace

void InitFd(Napi::Env env, Napi::Object exports) {
  auto add = [&](const char* name, Napi::Value (*function)(const Napi::CallbackInfo&)) {
    exports.Set(name, Napi::Function::New(env, function, name));
  };
  add("memfdCreate", MemfdCreate);
  add("addSeals", AddSeals);
  add("getSeals", GetSeals);
  add("ftruncate", Ftruncate);
  add("fdSize", FdSize);
  add("fdStat", FdStat);
  add("pread", Pread);
  add("pwrite", Pwrite);
  add("dup", Dup);
  add("close", Close);
  add("openFdCount", OpenFdCount);
  add("udmabufOpen", UdmabufOpen);
  add("udmabufCreate", UdmabufCreate);
  add("udmabufCreateList", UdmabufCreateList);
  add("dmabufSync", DmabufSync);
  add("mmap", Mmap);
  add("munmap", Munmap);
  add("eventfd", Eventfd);
  add("eventfdWrite", EventfdWrite);
  add("eventfdRead", EventfdRead);
  add("socketpair", Socketpair);
  add("unixListen", UnixListen);
  add("unixAccept", UnixAccept);
  add("unixConnect", UnixConnect);
  add("unixProbe", UnixProbe);
  add("groupId", GroupId);
  add("unixSend", UnixSend);
  add("unixRecv", UnixRecv);
  add("peerCredentials", PeerCredentials);
  add("socketKind", SocketKind);
  add("adoptFd", AdoptFd);
  add("watchReadable", WatchReadable);
  add("pollReadable", PollReadable);
  add("pageSize", PageSize);
}

}  // namespace guestfb
