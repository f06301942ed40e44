// drm module: the DRM/KMS calls guestfb needs, each a thin wrapper around one libdrm call or
// ioctl. Structures go to TypeScript as plain objects; mode infos and blobs as raw bytes, which
// native/drm.ts decodes.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xf86drm.h>
#include <xf86drmMode.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common.h"

namespace guestfb {
namespace {

[[noreturn]] void ThrowDrm(Napi::Env env, const char* call, int result) {
  // libdrm returns -1 with errno set, or -errno; errno stays set in both cases.
  int err = errno != 0 ? errno : (result < 0 ? -result : EIO);
  ThrowErrno(env, call, err);
}

uint64_t U64Arg(const Napi::Value& value, const char* what) {
  Napi::Env env = value.Env();
  if (value.IsBigInt()) {
    bool lossless = false;
    uint64_t result = value.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) ThrowRangeError(env, std::string(what) + " must fit in 64 bits unsigned");
    return result;
  }
  if (!value.IsNumber()) ThrowTypeError(env, std::string(what) + " must be a bigint or number");
  return SizeArg(value, what);
}

Napi::Array U32Array(Napi::Env env, const uint32_t* values, int count) {
  Napi::Array array = Napi::Array::New(env, count > 0 ? count : 0);
  for (int i = 0; i < count; i++) array.Set(i, Napi::Number::New(env, values[i]));
  return array;
}

Napi::Value Bytes(Napi::Env env, const void* data, size_t length) {
  return Napi::Buffer<uint8_t>::Copy(env, static_cast<const uint8_t*>(data), length);
}

// Owns a libdrm allocation and frees it with the matching function.
template <typename T, void (*Free)(T*)>
struct DrmPtr {
  T* value;
  explicit DrmPtr(T* pointer) : value(pointer) {}
  ~DrmPtr() {
    if (value != nullptr) Free(value);
  }
  DrmPtr(const DrmPtr&) = delete;
  DrmPtr& operator=(const DrmPtr&) = delete;
  T* operator->() const { return value; }
};

// Runs a libdrm getter with errno cleared; a null result throws (errno says why).
template <typename T, void (*Free)(T*), typename Getter>
DrmPtr<T, Free> Get(Napi::Env env, const char* call, Getter getter) {
  errno = 0;
  T* value = getter();
  if (value == nullptr) ThrowDrm(env, call, -1);
  return DrmPtr<T, Free>(value);
}

// Runs a libdrm call that returns 0 on success, with errno cleared; anything else throws.
template <typename Call>
void Check(Napi::Env env, const char* call, Call body) {
  errno = 0;
  int result = body();
  if (result != 0) ThrowDrm(env, call, result);
}

// One DRM ioctl on `request` through drmIoctl (which restarts on EINTR/EAGAIN).
template <typename Request>
void Ioctl(Napi::Env env, int fd, unsigned long code, const char* call, Request* request) {
  Check(env, call, [&] { return drmIoctl(fd, code, request); });
}

Napi::Value Open(const Napi::CallbackInfo& info) {
  if (!info[0].IsString()) ThrowTypeError(info.Env(), "path must be a string");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) ThrowErrno(info.Env(), "open", errno);
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value GetVersion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto version = Get<drmVersion, drmFreeVersion>(
      env, "drmGetVersion", [&] { return drmGetVersion(FdArg(info[0], "fd")); });
  Napi::Object result = Napi::Object::New(env);
  result.Set("name", std::string(version->name, version->name_len));
  result.Set("major", version->version_major);
  result.Set("minor", version->version_minor);
  result.Set("patch", version->version_patchlevel);
  result.Set("date", std::string(version->date, version->date_len));
  result.Set("description", std::string(version->desc, version->desc_len));
  return result;
}

Napi::Value SetClientCap(const Napi::CallbackInfo& info) {
  Check(info.Env(), "drmSetClientCap", [&] {
    return drmSetClientCap(FdArg(info[0], "fd"), Uint32Arg(info[1], "capability"),
                           U64Arg(info[2], "value"));
  });
  return info.Env().Undefined();
}

Napi::Value GetCap(const Napi::CallbackInfo& info) {
  uint64_t value = 0;
  Check(info.Env(), "drmGetCap",
        [&] { return drmGetCap(FdArg(info[0], "fd"), Uint32Arg(info[1], "capability"), &value); });
  return Napi::BigInt::New(info.Env(), value);
}

Napi::Value GetResources(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto res = Get<drmModeRes, drmModeFreeResources>(
      env, "drmModeGetResources", [&] { return drmModeGetResources(FdArg(info[0], "fd")); });
  Napi::Object result = Napi::Object::New(env);
  result.Set("fbs", U32Array(env, res->fbs, res->count_fbs));
  result.Set("crtcs", U32Array(env, res->crtcs, res->count_crtcs));
  result.Set("connectors", U32Array(env, res->connectors, res->count_connectors));
  result.Set("encoders", U32Array(env, res->encoders, res->count_encoders));
  result.Set("minWidth", res->min_width);
  result.Set("maxWidth", res->max_width);
  result.Set("minHeight", res->min_height);
  result.Set("maxHeight", res->max_height);
  return result;
}

// drmModeModeInfo has the kernel's drm_mode_modeinfo layout (68 bytes).
static_assert(sizeof(drmModeModeInfo) == 68);

Napi::Value GetConnector(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto connector = Get<drmModeConnector, drmModeFreeConnector>(env, "drmModeGetConnector", [&] {
    return drmModeGetConnector(FdArg(info[0], "fd"), Uint32Arg(info[1], "connectorId"));
  });
  Napi::Object result = Napi::Object::New(env);
  result.Set("id", connector->connector_id);
  result.Set("type", connector->connector_type);
  result.Set("typeId", connector->connector_type_id);
  result.Set("status", static_cast<uint32_t>(connector->connection));
  result.Set("mmWidth", connector->mmWidth);
  result.Set("mmHeight", connector->mmHeight);
  result.Set("subpixel", static_cast<uint32_t>(connector->subpixel));
  result.Set("encoderId", connector->encoder_id);
  result.Set("encoders", U32Array(env, connector->encoders, connector->count_encoders));
  size_t mode_count = connector->count_modes > 0 ? connector->count_modes : 0;
  result.Set("modes", Bytes(env, connector->modes, mode_count * sizeof(drmModeModeInfo)));
  return result;
}

Napi::Value GetEncoder(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto encoder = Get<drmModeEncoder, drmModeFreeEncoder>(env, "drmModeGetEncoder", [&] {
    return drmModeGetEncoder(FdArg(info[0], "fd"), Uint32Arg(info[1], "encoderId"));
  });
  Napi::Object result = Napi::Object::New(env);
  result.Set("id", encoder->encoder_id);
  result.Set("type", encoder->encoder_type);
  result.Set("crtcId", encoder->crtc_id);
  result.Set("possibleCrtcs", encoder->possible_crtcs);
  result.Set("possibleClones", encoder->possible_clones);
  return result;
}

Napi::Value GetCrtc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto crtc = Get<drmModeCrtc, drmModeFreeCrtc>(env, "drmModeGetCrtc", [&] {
    return drmModeGetCrtc(FdArg(info[0], "fd"), Uint32Arg(info[1], "crtcId"));
  });
  Napi::Object result = Napi::Object::New(env);
  result.Set("id", crtc->crtc_id);
  result.Set("fbId", crtc->buffer_id);
  result.Set("x", crtc->x);
  result.Set("y", crtc->y);
  result.Set("width", crtc->width);
  result.Set("height", crtc->height);
  result.Set("modeValid", crtc->mode_valid != 0);
  result.Set("mode", Bytes(env, &crtc->mode, sizeof(drmModeModeInfo)));
  result.Set("gammaSize", crtc->gamma_size);
  return result;
}

Napi::Value GetPlaneResources(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto res = Get<drmModePlaneRes, drmModeFreePlaneResources>(env, "drmModeGetPlaneResources", [&] {
    return drmModeGetPlaneResources(FdArg(info[0], "fd"));
  });
  return U32Array(env, res->planes, static_cast<int>(res->count_planes));
}

Napi::Value GetPlane(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto plane = Get<drmModePlane, drmModeFreePlane>(env, "drmModeGetPlane", [&] {
    return drmModeGetPlane(FdArg(info[0], "fd"), Uint32Arg(info[1], "planeId"));
  });
  Napi::Object result = Napi::Object::New(env);
  result.Set("id", plane->plane_id);
  result.Set("crtcId", plane->crtc_id);
  result.Set("fbId", plane->fb_id);
  result.Set("possibleCrtcs", plane->possible_crtcs);
  result.Set("formats", U32Array(env, plane->formats, static_cast<int>(plane->count_formats)));
  return result;
}

Napi::Value GetObjectProperties(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto props = Get<drmModeObjectProperties, drmModeFreeObjectProperties>(
      env, "drmModeObjectGetProperties", [&] {
        return drmModeObjectGetProperties(FdArg(info[0], "fd"), Uint32Arg(info[1], "objectId"),
                                          Uint32Arg(info[2], "objectType"));
      });
  Napi::Array ids = U32Array(env, props->props, static_cast<int>(props->count_props));
  Napi::Array values = Napi::Array::New(env, props->count_props);
  for (uint32_t i = 0; i < props->count_props; i++)
    values.Set(i, Napi::BigInt::New(env, props->prop_values[i]));
  Napi::Object result = Napi::Object::New(env);
  result.Set("ids", ids);
  result.Set("values", values);
  return result;
}

Napi::Value GetProperty(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto prop = Get<drmModePropertyRes, drmModeFreeProperty>(env, "drmModeGetProperty", [&] {
    return drmModeGetProperty(FdArg(info[0], "fd"), Uint32Arg(info[1], "propertyId"));
  });
  Napi::Object result = Napi::Object::New(env);
  result.Set("id", prop->prop_id);
  result.Set("name", std::string(prop->name, strnlen(prop->name, DRM_PROP_NAME_LEN)));
  result.Set("flags", prop->flags);
  Napi::Array values = Napi::Array::New(env, prop->count_values);
  for (int i = 0; i < prop->count_values; i++)
    values.Set(i, Napi::BigInt::New(env, prop->values[i]));
  result.Set("values", values);
  Napi::Array enums = Napi::Array::New(env, prop->count_enums);
  for (int i = 0; i < prop->count_enums; i++) {
    Napi::Object entry = Napi::Object::New(env);
    entry.Set("name",
              std::string(prop->enums[i].name, strnlen(prop->enums[i].name, DRM_PROP_NAME_LEN)));
    entry.Set("value", Napi::BigInt::New(env, static_cast<uint64_t>(prop->enums[i].value)));
    enums.Set(i, entry);
  }
  result.Set("enums", enums);
  return result;
}

Napi::Value GetPropertyBlob(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto blob = Get<drmModePropertyBlobRes, drmModeFreePropertyBlob>(
      env, "drmModeGetPropertyBlob",
      [&] { return drmModeGetPropertyBlob(FdArg(info[0], "fd"), Uint32Arg(info[1], "blobId")); });
  return Bytes(env, blob->data, blob->length);
}

Napi::Value CreatePropertyBlob(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info[0], "fd");
  if (!info[1].IsTypedArray() ||
      info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    ThrowTypeError(env, "data must be a Uint8Array");
  Napi::Uint8Array data = info[1].As<Napi::Uint8Array>();
  uint32_t id = 0;
  Check(env, "drmModeCreatePropertyBlob",
        [&] { return drmModeCreatePropertyBlob(fd, data.Data(), data.ByteLength(), &id); });
  return Napi::Number::New(env, id);
}

Napi::Value DestroyPropertyBlob(const Napi::CallbackInfo& info) {
  Check(info.Env(), "drmModeDestroyPropertyBlob", [&] {
    return drmModeDestroyPropertyBlob(FdArg(info[0], "fd"), Uint32Arg(info[1], "blobId"));
  });
  return info.Env().Undefined();
}

Napi::Value PrimeFdToHandle(const Napi::CallbackInfo& info) {
  uint32_t handle = 0;
  Check(info.Env(), "drmPrimeFDToHandle", [&] {
    return drmPrimeFDToHandle(FdArg(info[0], "fd"), FdArg(info[1], "primeFd"), &handle);
  });
  return Napi::Number::New(info.Env(), handle);
}

Napi::Value PrimeHandleToFd(const Napi::CallbackInfo& info) {
  int prime_fd = -1;
  Check(info.Env(), "drmPrimeHandleToFD", [&] {
    return drmPrimeHandleToFD(FdArg(info[0], "fd"), Uint32Arg(info[1], "handle"),
                              DRM_CLOEXEC | DRM_RDWR, &prime_fd);
  });
  return Napi::Number::New(info.Env(), prime_fd);
}

Napi::Value GemClose(const Napi::CallbackInfo& info) {
  drm_gem_close request = {};
  request.handle = Uint32Arg(info[1], "handle");
  Ioctl(info.Env(), FdArg(info[0], "fd"), DRM_IOCTL_GEM_CLOSE, "ioctl(DRM_IOCTL_GEM_CLOSE)",
        &request);
  return info.Env().Undefined();
}

// Reads a four-element array of u32 (missing trailing entries are 0).
void Plane4(const Napi::Value& value, const char* what, uint32_t out[4]) {
  if (!value.IsArray()) ThrowTypeError(value.Env(), std::string(what) + " must be an array");
  Napi::Array array = value.As<Napi::Array>();
  if (array.Length() > 4) ThrowRangeError(value.Env(), std::string(what) + " has more than 4");
  for (uint32_t i = 0; i < 4; i++) out[i] = i < array.Length() ? Uint32Arg(array.Get(i), what) : 0;
}

Napi::Value AddFb2(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info[0], "fd");
  if (!info[1].IsObject()) ThrowTypeError(env, "the framebuffer must be an object");
  Napi::Object fb = info[1].As<Napi::Object>();
  uint32_t handles[4], pitches[4], offsets[4];
  Plane4(fb.Get("handles"), "handles", handles);
  Plane4(fb.Get("pitches"), "pitches", pitches);
  Plane4(fb.Get("offsets"), "offsets", offsets);
  uint64_t modifiers[4] = {0, 0, 0, 0};
  uint32_t flags = 0;
  Napi::Value modifier_value = fb.Get("modifiers");
  if (!modifier_value.IsUndefined() && !modifier_value.IsNull()) {
    if (!modifier_value.IsArray()) ThrowTypeError(env, "modifiers must be an array");
    Napi::Array array = modifier_value.As<Napi::Array>();
    if (array.Length() > 4) ThrowRangeError(env, "modifiers has more than 4 entries");
    for (uint32_t i = 0; i < array.Length(); i++) modifiers[i] = U64Arg(array.Get(i), "modifier");
    flags |= DRM_MODE_FB_MODIFIERS;
  }
  uint32_t id = 0;
  Check(env, "drmModeAddFB2WithModifiers", [&] {
    return drmModeAddFB2WithModifiers(
        fd, Uint32Arg(fb.Get("width"), "width"), Uint32Arg(fb.Get("height"), "height"),
        Uint32Arg(fb.Get("format"), "format"), handles, pitches, offsets,
        (flags & DRM_MODE_FB_MODIFIERS) != 0 ? modifiers : nullptr, &id, flags);
  });
  return Napi::Number::New(env, id);
}

Napi::Value RmFb(const Napi::CallbackInfo& info) {
  Check(info.Env(), "drmModeRmFB",
        [&] { return drmModeRmFB(FdArg(info[0], "fd"), Uint32Arg(info[1], "fbId")); });
  return info.Env().Undefined();
}

void FreeAtomic(drmModeAtomicReq* request) { drmModeAtomicFree(request); }

// atomicCommit(fd, objectIds, propertyIds, values, flags, userData, outFences)
// outFences: [{objectId, propertyId}] for *_OUT_FENCE_PTR properties: native points each at an
// s32 slot and returns the fds the kernel stored there (-1 when none), owned by the caller.
Napi::Value AtomicCommit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info[0], "fd");
  if (!info[1].IsArray() || !info[2].IsArray() || !info[3].IsArray())
    ThrowTypeError(env, "objectIds, propertyIds and values must be arrays");
  Napi::Array objects = info[1].As<Napi::Array>();
  Napi::Array props = info[2].As<Napi::Array>();
  Napi::Array values = info[3].As<Napi::Array>();
  if (objects.Length() != props.Length() || objects.Length() != values.Length())
    ThrowRangeError(env, "objectIds, propertyIds and values differ in length");
  uint32_t flags = Uint32Arg(info[4], "flags");
  uint64_t user_data = info[5].IsUndefined() ? 0 : U64Arg(info[5], "userData");
  std::vector<std::pair<uint32_t, uint32_t>> fence_props;
  if (!info[6].IsUndefined()) {
    if (!info[6].IsArray()) ThrowTypeError(env, "outFences must be an array");
    Napi::Array fences = info[6].As<Napi::Array>();
    for (uint32_t i = 0; i < fences.Length(); i++) {
      if (!fences.Get(i).IsObject()) ThrowTypeError(env, "an out fence is {objectId, propertyId}");
      Napi::Object fence = fences.Get(i).As<Napi::Object>();
      fence_props.emplace_back(Uint32Arg(fence.Get("objectId"), "objectId"),
                               Uint32Arg(fence.Get("propertyId"), "propertyId"));
    }
  }
  DrmPtr<drmModeAtomicReq, FreeAtomic> request(drmModeAtomicAlloc());
  if (request.value == nullptr) ThrowErrno(env, "drmModeAtomicAlloc", ENOMEM);
  for (uint32_t i = 0; i < objects.Length(); i++) {
    int added = drmModeAtomicAddProperty(request.value, Uint32Arg(objects.Get(i), "objectId"),
                                         Uint32Arg(props.Get(i), "propertyId"),
                                         U64Arg(values.Get(i), "value"));
    if (added < 0) ThrowErrno(env, "drmModeAtomicAddProperty", -added);
  }
  // The kernel writes an s32 fd through each pointer; keep each slot 8-byte aligned.
  std::vector<int64_t> slots(fence_props.size(), 0);
  for (size_t i = 0; i < fence_props.size(); i++) {
    auto* slot = reinterpret_cast<int32_t*>(&slots[i]);
    *slot = -1;
    int added = drmModeAtomicAddProperty(request.value, fence_props[i].first, fence_props[i].second,
                                         static_cast<uint64_t>(reinterpret_cast<uintptr_t>(slot)));
    if (added < 0) ThrowErrno(env, "drmModeAtomicAddProperty", -added);
  }
  errno = 0;
  int result = drmModeAtomicCommit(fd, request.value, flags,
                                   reinterpret_cast<void*>(static_cast<uintptr_t>(user_data)));
  if (result != 0) {
    int err = errno != 0 ? errno : -result;
    for (int64_t& slot : slots) {
      int32_t fence = *reinterpret_cast<int32_t*>(&slot);
      if (fence >= 0) close(fence);
    }
    ThrowErrno(env, "drmModeAtomicCommit", err);
  }
  Napi::Array fences = Napi::Array::New(env, slots.size());
  for (size_t i = 0; i < slots.size(); i++)
    fences.Set(static_cast<uint32_t>(i), *reinterpret_cast<int32_t*>(&slots[i]));
  return fences;
}

Napi::Value CreateDumb(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  drm_mode_create_dumb request = {};
  request.width = Uint32Arg(info[1], "width");
  request.height = Uint32Arg(info[2], "height");
  request.bpp = Uint32Arg(info[3], "bpp");
  Ioctl(env, FdArg(info[0], "fd"), DRM_IOCTL_MODE_CREATE_DUMB, "ioctl(DRM_IOCTL_MODE_CREATE_DUMB)",
        &request);
  Napi::Object dumb = Napi::Object::New(env);
  dumb.Set("handle", request.handle);
  dumb.Set("pitch", request.pitch);
  dumb.Set("size", static_cast<double>(request.size));
  return dumb;
}

Napi::Value MapDumb(const Napi::CallbackInfo& info) {
  drm_mode_map_dumb request = {};
  request.handle = Uint32Arg(info[1], "handle");
  Ioctl(info.Env(), FdArg(info[0], "fd"), DRM_IOCTL_MODE_MAP_DUMB, "ioctl(DRM_IOCTL_MODE_MAP_DUMB)",
        &request);
  return Napi::Number::New(info.Env(), static_cast<double>(request.offset));
}

Napi::Value DestroyDumb(const Napi::CallbackInfo& info) {
  drm_mode_destroy_dumb request = {};
  request.handle = Uint32Arg(info[1], "handle");
  Ioctl(info.Env(), FdArg(info[0], "fd"), DRM_IOCTL_MODE_DESTROY_DUMB,
        "ioctl(DRM_IOCTL_MODE_DESTROY_DUMB)", &request);
  return info.Env().Undefined();
}

Napi::Value FormatName(const Napi::CallbackInfo& info) {
  std::unique_ptr<char, decltype(&free)> name(drmGetFormatName(Uint32Arg(info[0], "format")), free);
  if (name == nullptr) ThrowErrno(info.Env(), "drmGetFormatName", ENOMEM);
  return Napi::String::New(info.Env(), name.get());
}

// Reads pending DRM events (page flip / vblank) without blocking: null when none are queued.
Napi::Value ReadEvents(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info[0], "fd");
  pollfd entry = {fd, POLLIN, 0};
  if (poll(&entry, 1, 0) <= 0 || (entry.revents & POLLIN) == 0) return env.Null();
  char buffer[4096];
  ssize_t n;
  do {
    n = read(fd, buffer, sizeof(buffer));
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno == EAGAIN) return env.Null();
  if (n < 0) ThrowErrno(env, "read", errno);
  return Bytes(env, buffer, static_cast<size_t>(n));
}

}  // namespace

void InitDrm(Napi::Env env, Napi::Object exports) {
  Napi::Object drm = Napi::Object::New(env);
  auto add = [&](const char* name, Napi::Value (*function)(const Napi::CallbackInfo&)) {
    drm.Set(name, Napi::Function::New(env, function, name));
  };
  add("open", Open);
  add("getVersion", GetVersion);
  add("setClientCap", SetClientCap);
  add("getCap", GetCap);
  add("getResources", GetResources);
  add("getConnector", GetConnector);
  add("getEncoder", GetEncoder);
  add("getCrtc", GetCrtc);
  add("getPlaneResources", GetPlaneResources);
  add("getPlane", GetPlane);
  add("getObjectProperties", GetObjectProperties);
  add("getProperty", GetProperty);
  add("getPropertyBlob", GetPropertyBlob);
  add("createPropertyBlob", CreatePropertyBlob);
  add("destroyPropertyBlob", DestroyPropertyBlob);
  add("primeFdToHandle", PrimeFdToHandle);
  add("primeHandleToFd", PrimeHandleToFd);
  add("gemClose", GemClose);
  add("addFb2", AddFb2);
  add("rmFb", RmFb);
  add("atomicCommit", AtomicCommit);
  add("createDumb", CreateDumb);
  add("mapDumb", MapDumb);
  add("destroyDumb", DestroyDumb);
  add("formatName", FormatName);
  add("readEvents", ReadEvents);
  exports.Set("drm", drm);
}

}  // namespace guestfb
