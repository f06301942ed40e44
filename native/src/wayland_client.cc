// libwayland-client bindings: a wl_display connection read and flushed from Node's libuv loop
// (never blocking), proxies whose events arrive in JS decoded per the message signature.
//
// Reading follows libwayland's prepare_read / read_events / dispatch_pending protocol on poll
// readiness. Requests are flushed once per loop iteration (uv_prepare) after marshalling; a full
// socket switches the poll to writable until the flush completes.
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>
#include <wayland-client-core.h>

#include <algorithm>
#include <cstring>
#include <unordered_set>

#include "common.h"
#include "wayland_common.h"

extern "C" {
extern const struct wl_interface wl_display_interface;
}

namespace guestfb::wayland {

namespace {

class Connection;
class ProxyWrap;

// Marks proxies whose user data is a ProxyData.
const char* const kProxyTag = "guestfb";

struct ProxyData {
  wl_proxy* proxy = nullptr;
  const wl_interface* iface = nullptr;
  Connection* connection = nullptr;
  ProxyWrap* wrap = nullptr;
  Napi::ObjectReference wrapper;  // strong while the proxy lives
  Napi::FunctionReference dispatch;
  bool isDisplay = false;
};

ProxyData* DataOf(wl_proxy* proxy) {
  if (proxy == nullptr || wl_proxy_get_tag(proxy) != &kProxyTag) return nullptr;
  return static_cast<ProxyData*>(wl_proxy_get_user_data(proxy));
}

// The last message libwayland-client logged on this thread (protocol errors are logged).
thread_local std::string lastLogMessage;

void LogHandler(const char* format, va_list args) {
  char buffer[1024];
  vsnprintf(buffer, sizeof buffer, format, args);
  lastLogMessage = buffer;
  while (!lastLogMessage.empty() && lastLogMessage.back() == '\n') lastLogMessage.pop_back();
}

int ClientDispatch(const void* implementation, void* target, uint32_t opcode,
                   const wl_message* message, wl_argument* args);

// ---------------------------------------------------------------------------------------------

class ProxyWrap : public Napi::ObjectWrap<ProxyWrap> {
 public:
  static Napi::Function DefineClass(Napi::Env env) {
    return ObjectWrap::DefineClass(env, "NativeProxy",
                                   {
                                       InstanceAccessor<&ProxyWrap::Id>("id"),
                                       InstanceAccessor<&ProxyWrap::Version>("version"),
                                       InstanceAccessor<&ProxyWrap::InterfaceName>("interfaceName"),
                                       InstanceAccessor<&ProxyWrap::Alive>("alive"),
                                       InstanceMethod<&ProxyWrap::Marshal>("marshal"),
                                       InstanceMethod<&ProxyWrap::CommitFrame>("commitFrame"),
                                       InstanceMethod<&ProxyWrap::SetDispatcher>("setDispatcher"),
                                       InstanceMethod<&ProxyWrap::Destroy>("destroy"),
                                   });
  }

  explicit ProxyWrap(const Napi::CallbackInfo& info) : ObjectWrap(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) {
      ThrowTypeError(info.Env(), "NativeProxy is created by the client connection");
    }
    data_ = info[0].As<Napi::External<ProxyData>>().Data();
    id_ = wl_proxy_get_id(data_->proxy);
    version_ = data_->isDisplay ? 1 : wl_proxy_get_version(data_->proxy);
    interfaceName_ = data_->iface->name;
  }

  void Detach() { data_ = nullptr; }
  ProxyData* Data() const { return data_; }

 private:
  Napi::Value Id(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), id_); }
  Napi::Value Version(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), version_);
  }
  Napi::Value InterfaceName(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), interfaceName_);
  }
  Napi::Value Alive(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), data_ != nullptr);
  }

  Napi::Value Marshal(const Napi::CallbackInfo& info);
  void CommitFrame(const Napi::CallbackInfo& info);
  void SetDispatcher(const Napi::CallbackInfo& info);
  void Destroy(const Napi::CallbackInfo& info);

  ProxyData* data_ = nullptr;
  uint32_t id_ = 0;
  uint32_t version_ = 0;
  std::string interfaceName_;
};

// ---------------------------------------------------------------------------------------------

class Connection : public Napi::ObjectWrap<Connection> {
 public:
  static Napi::Function DefineClass(Napi::Env env) {
    return ObjectWrap::DefineClass(
        env, "NativeClientConnection",
        {
            InstanceAccessor<&Connection::DisplayProxy>("display"),
            InstanceAccessor<&Connection::Connected>("connected"),
            InstanceAccessor<&Connection::WriteBlocked>("writeBlocked"),
            InstanceMethod<&Connection::OnError>("onError"),
            InstanceMethod<&Connection::OnListenerError>("onListenerError"),
            InstanceMethod<&Connection::Flush>("flush"),
            InstanceMethod<&Connection::Disconnect>("disconnect"),
        });
  }

  explicit Connection(const Napi::CallbackInfo& info);
  ~Connection() override {
    if (display_ != nullptr) DisconnectNow();
  }

  // Wraps a proxy that libwayland created (marshal's new_id or an event's new_id).
  Napi::Object Adopt(wl_proxy* proxy, const wl_interface* iface);
  // The proxy was destroyed (wl_proxy_destroy or a destructor request).
  void Forget(ProxyData* data);
  void MarkDirty() { needsFlush_ = true; }
  void ListenerFailed(const Napi::Error& error) {
    ReportError(Env(), onListenerError_, {}, error, "Wayland event listener");
  }

  bool JsAllowed() const { return jsAllowed_; }

 private:
  Napi::Value DisplayProxy(const Napi::CallbackInfo& info) {
    if (displayWrapper_.IsEmpty()) return info.Env().Null();
    return displayWrapper_.Value();
  }
  Napi::Value Connected(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), display_ != nullptr && !failed_ && !disconnectRequested_);
  }
  // True while the last flush found the socket full (the poll waits for writable).
  Napi::Value WriteBlocked(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), pollingWritable_);
  }
  void OnError(const Napi::CallbackInfo& info) { SetHandler(info, onError_); }
  void OnListenerError(const Napi::CallbackInfo& info) { SetHandler(info, onListenerError_); }
  static void SetHandler(const Napi::CallbackInfo& info, Napi::FunctionReference& slot) {
    if (info[0].IsNull() || info[0].IsUndefined()) {
      slot.Reset();
      return;
    }
    if (!info[0].IsFunction()) ThrowTypeError(info.Env(), "handler must be a function");
    slot = Napi::Persistent(info[0].As<Napi::Function>());
  }
  void Flush(const Napi::CallbackInfo&) { DoFlush(); }
  void Disconnect(const Napi::CallbackInfo&) {
    if (display_ == nullptr) return;
    disconnectRequested_ = true;
    if (depth_ == 0) DisconnectNow();
  }

  static void OnPoll(uv_poll_t* handle, int status, int events);
  static void OnPrepare(uv_prepare_t* handle);
  static void OnEnvCleanup(void* arg);

  void ReadAndDispatch();
  void DoFlush();
  void Fail(int pollError);
  void StopPolling();
  void DisconnectNow();

  wl_display* display_ = nullptr;
  ProxyData* displayData_ = nullptr;
  Napi::ObjectReference displayWrapper_;
  uv_poll_t* poll_ = nullptr;
  uv_prepare_t* prepare_ = nullptr;
  Napi::ObjectReference self_;  // strong while polling: a live connection keeps Node running
  Napi::FunctionReference onError_;
  Napi::FunctionReference onListenerError_;
  std::unique_ptr<Napi::AsyncContext> asyncContext_;
  std::unordered_set<ProxyData*> proxies_;
  int depth_ = 0;
  bool failed_ = false;
  bool disconnectRequested_ = false;
  bool needsFlush_ = false;
  bool pollingWritable_ = false;
  bool jsAllowed_ = true;
  bool cleanupHookAdded_ = false;
};

Connection::Connection(const Napi::CallbackInfo& info) : ObjectWrap(info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsExternal()) ThrowTypeError(env, "use connect()");
  display_ = info[0].As<Napi::External<wl_display>>().Data();
  uv_loop_t* loop = nullptr;
  int status = napi_get_uv_event_loop(env, &loop) == napi_ok ? 0 : UV_EINVAL;
  if (status == 0) {
    status = StartLoopHandles(loop, wl_display_get_fd(display_), this, OnPoll, OnPrepare, &poll_,
                              &prepare_);
  }
  if (status != 0) {
    wl_display_disconnect(display_);
    display_ = nullptr;
    ThrowErrno(env, "uv_poll_init", -status);
  }
  asyncContext_ = std::make_unique<Napi::AsyncContext>(env, "guestfb.wl_display_client");
  self_ = Napi::Persistent(info.This().As<Napi::Object>());
  napi_add_env_cleanup_hook(env, OnEnvCleanup, this);
  cleanupHookAdded_ = true;

  displayData_ = new ProxyData();
  displayData_->proxy = reinterpret_cast<wl_proxy*>(display_);
  displayData_->iface = &wl_display_interface;
  displayData_->connection = this;
  displayData_->isDisplay = true;
  Napi::Object wrapper =
      StateOf(env).proxyClass.New({Napi::External<ProxyData>::New(env, displayData_)});
  displayData_->wrap = ProxyWrap::Unwrap(wrapper);
  displayWrapper_ = Napi::Persistent(wrapper);
}

void Connection::OnEnvCleanup(void* arg) {
  auto* self = static_cast<Connection*>(arg);
  self->cleanupHookAdded_ = false;
  self->jsAllowed_ = false;
  if (self->display_ != nullptr) self->DisconnectNow();
}

Napi::Object Connection::Adopt(wl_proxy* proxy, const wl_interface* iface) {
  Napi::Env env = Env();
  auto* data = new ProxyData();
  data->proxy = proxy;
  data->iface = iface;
  data->connection = this;
  wl_proxy_set_tag(proxy, &kProxyTag);
  wl_proxy_set_user_data(proxy, data);
  proxies_.insert(data);
  Napi::Object wrapper = StateOf(env).proxyClass.New({Napi::External<ProxyData>::New(env, data)});
  data->wrap = ProxyWrap::Unwrap(wrapper);
  data->wrapper = Napi::Persistent(wrapper);
  return wrapper;
}

void Connection::Forget(ProxyData* data) {
  proxies_.erase(data);
  if (data->wrap != nullptr) data->wrap->Detach();
  delete data;
}

void Connection::OnPoll(uv_poll_t* handle, int status, int events) {
  auto* self = static_cast<Connection*>(handle->data);
  if (self->display_ == nullptr || self->failed_) return;
  Napi::Env env = self->Env();
  Napi::HandleScope scope(env);
  Napi::Object keepAlive = self->Value();
  Napi::CallbackScope callbackScope(env, OpenCallbackScope(env, keepAlive, *self->asyncContext_));
  self->depth_++;
  if (status < 0) {
    // POLLERR (a reset socket) may still have the server's last messages queued, among them
    // the protocol error that made it hang up: read them first so that error is reported.
    self->ReadAndDispatch();
    if (!self->failed_) self->Fail(-status);
  } else {
    if ((events & UV_WRITABLE) != 0) self->DoFlush();
    if ((events & (UV_READABLE | UV_DISCONNECT)) != 0 && !self->failed_) self->ReadAndDispatch();
    if (!self->failed_ && self->needsFlush_) self->DoFlush();
  }
  self->depth_--;
  if (self->disconnectRequested_ && self->display_ != nullptr) self->DisconnectNow();
}

void Connection::OnPrepare(uv_prepare_t* handle) {
  auto* self = static_cast<Connection*>(handle->data);
  if (!self->needsFlush_ || self->display_ == nullptr || self->failed_) return;
  Napi::Env env = self->Env();
  Napi::HandleScope scope(env);
  Napi::CallbackScope callbackScope(env,
                                    OpenCallbackScope(env, self->Value(), *self->asyncContext_));
  self->depth_++;
  self->DoFlush();
  self->depth_--;
  if (self->disconnectRequested_ && self->display_ != nullptr) self->DisconnectNow();
}

void Connection::ReadAndDispatch() {
  lastLogMessage.clear();
  while (wl_display_prepare_read(display_) != 0) {
    if (wl_display_dispatch_pending(display_) < 0) return Fail(0);
  }
  if (wl_display_read_events(display_) < 0) return Fail(0);
  if (wl_display_dispatch_pending(display_) < 0) return Fail(0);
}

void Connection::DoFlush() {
  if (display_ == nullptr || failed_) return;
  needsFlush_ = false;
  int result = wl_display_flush(display_);
  int err = errno;
  if (result < 0 && err == EAGAIN) {
    if (!pollingWritable_) {
      pollingWritable_ = true;
      uv_poll_start(poll_, UV_READABLE | UV_WRITABLE, OnPoll);
    }
    return;
  }
  if (pollingWritable_) {
    pollingWritable_ = false;
    uv_poll_start(poll_, UV_READABLE, OnPoll);
  }
  // EPIPE: the server hung up, maybe after sending an error; reading will report it.
  if (result < 0 && err != EPIPE) Fail(err);
}

void Connection::StopPolling() {
  CloseAndDelete(poll_);
  poll_ = nullptr;
  CloseAndDelete(prepare_);
  prepare_ = nullptr;
  if (!self_.IsEmpty()) self_.Reset();
}

void Connection::Fail(int pollError) {
  if (failed_) return;
  failed_ = true;
  int err = wl_display_get_error(display_);
  if (err == 0) err = pollError != 0 ? pollError : EPIPE;
  std::string message = lastLogMessage;
  uint32_t code = 0;
  const wl_interface* iface = nullptr;
  uint32_t objectId = 0;
  // A wl_display.error event sets these (libwayland reports wl_display's own INVALID_OBJECT and
  // INVALID_METHOD as EINVAL, NO_MEMORY as ENOMEM, the rest as EPROTO); a hang-up leaves id 0.
  code = wl_display_get_protocol_error(display_, &iface, &objectId);
  bool protocolError = objectId != 0;
  StopPolling();
  if (!jsAllowed_) return;
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  Napi::Object errorInfo = Napi::Object::New(env);
  errorInfo.Set("errno", Napi::Number::New(env, err));
  if (protocolError) {
    errorInfo.Set("code", Napi::Number::New(env, code));
    if (iface != nullptr) errorInfo.Set("interfaceName", Napi::String::New(env, iface->name));
    errorInfo.Set("objectId", Napi::Number::New(env, objectId));
  }
  if (!message.empty()) errorInfo.Set("message", Napi::String::New(env, message));
  if (onError_.IsEmpty()) {
    fprintf(stderr, "guestfb wayland: connection failed: %s%s%s\n", strerror(err),
            message.empty() ? "" : ": ", message.c_str());
    return;
  }
  try {
    Napi::Function handler = onError_.Value();  // the handler may disconnect (and reset it)
    handler.Call(env.Undefined(), {errorInfo});
  } catch (const Napi::Error& error) {
    fprintf(stderr, "guestfb wayland: the connection error handler threw: %s\n",
            DescribeError(error).c_str());
  }
}

void Connection::DisconnectNow() {
  if (display_ == nullptr) return;
  disconnectRequested_ = true;
  StopPolling();
  // libwayland frees only zombies on disconnect: live proxies are destroyed here.
  for (ProxyData* data : proxies_) {
    wl_proxy_destroy(data->proxy);
    if (data->wrap != nullptr) data->wrap->Detach();
    delete data;
  }
  proxies_.clear();
  if (displayData_->wrap != nullptr) displayData_->wrap->Detach();
  delete displayData_;
  displayData_ = nullptr;
  wl_display_disconnect(display_);
  display_ = nullptr;
  onError_.Reset();
  onListenerError_.Reset();
  if (cleanupHookAdded_) {
    napi_remove_env_cleanup_hook(Env(), OnEnvCleanup, this);
    cleanupHookAdded_ = false;
  }
}

// ---------------------------------------------------------------------------------------------

// The proxy wrapper passed as an `o` argument; throws TypeError for anything else.
ProxyData* ProxyArg(Napi::Env env, const Napi::Value& value, const ArgName& what) {
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(StateOf(env).proxyClass.Value())) {
    ThrowTypeError(env, what + " must be a NativeProxy");
  }
  ProxyWrap* wrap = nullptr;
  try {
    wrap = ProxyWrap::Unwrap(value.As<Napi::Object>());
  } catch (const Napi::Error&) {
  }
  if (wrap == nullptr) ThrowTypeError(env, what + " must be a NativeProxy");
  if (wrap->Data() == nullptr) ThrowTypeError(env, what + " is a destroyed proxy");
  return wrap->Data();
}

Napi::Value ProxyWrap::Marshal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t opcode = Uint32Arg(info[0], "opcode");
  if (!info[1].IsArray()) ThrowTypeError(env, "args must be an array");
  Napi::Array values = info[1].As<Napi::Array>();
  bool destroy = info.Length() > 4 && info[4].ToBoolean().Value();
  ProxyData* data = data_;
  const wl_interface* iface =
      data != nullptr ? data->iface : FindInterface(interfaceName_);  // for checks only
  if (iface == nullptr) {
    throw PlainError(env, "the proxy was destroyed", "ERR_WAYLAND_DESTROYED");
  }
  MessageShape shape;
  const wl_message& message = MessageAt(env, iface, true, opcode, &shape);
  int newIdIndex = -1;
  for (int i = 0; i < shape.count; i++) {
    if (shape.args[i].type == 'n') newIdIndex = i;
  }
  if (data == nullptr) {
    // Destructors after disconnect are harmless; asking for a new object is not.
    if (newIdIndex >= 0) throw PlainError(env, "the proxy was destroyed", "ERR_WAYLAND_DESTROYED");
    return env.Undefined();
  }
  if (data->isDisplay && destroy) ThrowTypeError(env, "the wl_display proxy cannot be destroyed");
  CheckCall(env, iface, message, shape, version_, "proxy", values);

  wl_argument args[kMaxArgs];
  ArgStorage storage;
  EncodeArgs(
      env, iface, message, shape, values, storage, args,
      [&](const ArgSpec& spec, const Napi::Value& value, const ArgName& what, wl_argument* out) {
        if (spec.type == 'n') {
          out->o = nullptr;  // libwayland creates the proxy
          return;
        }
        ProxyData* object = ProxyArg(env, value, what);
        if (object->connection != data->connection) {
          ThrowTypeError(env, what + " belongs to another connection");
        }
        if (spec.iface != nullptr && strcmp(spec.iface->name, object->iface->name) != 0) {
          ThrowTypeError(env,
                         what + " must be a " + spec.iface->name + ", got " + object->iface->name);
        }
        out->o = reinterpret_cast<wl_object*>(object->proxy);
      });

  const wl_interface* newIface = nullptr;
  uint32_t newVersion = version_ == 0 ? 1 : version_;
  if (newIdIndex >= 0) {
    const ArgSpec& spec = shape.args[newIdIndex];
    bool untyped = spec.iface == nullptr && newIdIndex >= 2 &&
                   shape.args[newIdIndex - 2].type == 's' && shape.args[newIdIndex - 1].type == 'u';
    if (!info[2].IsUndefined() && !info[2].IsNull()) {
      // libwayland's own tables (wl_display.sync's wl_callback...) serve when the name matches
      // the message's type and nobody defined it.
      bool builtin = info[2].IsString() && spec.iface != nullptr &&
                     info[2].As<Napi::String>().Utf8Value() == spec.iface->name &&
                     FindInterface(spec.iface->name) == nullptr;
      newIface = builtin ? spec.iface : InterfaceArg(info[2], "newInterface");
    } else if (spec.iface != nullptr) {
      newIface = FindInterface(spec.iface->name);
      if (newIface == nullptr) newIface = spec.iface;
    } else if (untyped && args[newIdIndex - 2].s != nullptr) {
      newIface = InterfaceArg(values.Get(newIdIndex - 2), "interface name argument");
    }
    if (newIface == nullptr || !IsDefined(newIface)) {
      ThrowTypeError(env, std::string(iface->name) + "." + message.name +
                              " needs a defined interface for its new_id");
    }
    if (untyped) {
      const char* named = args[newIdIndex - 2].s;
      if (named == nullptr || strcmp(named, newIface->name) != 0) {
        ThrowTypeError(env, "newInterface does not match the interface name argument");
      }
      newVersion = args[newIdIndex - 1].u;
    }
    if (info.Length() > 3 && !info[3].IsUndefined() && !info[3].IsNull()) {
      newVersion = Uint32Arg(info[3], "newVersion");
      if (untyped && newVersion != args[newIdIndex - 1].u) {
        ThrowTypeError(env, "newVersion does not match the version argument");
      }
    }
  }

  Connection* connection = data->connection;
  wl_proxy* proxy = data->proxy;
  uint32_t flags = destroy ? WL_MARSHAL_FLAG_DESTROY : 0;
  errno = 0;
  wl_proxy* created =
      wl_proxy_marshal_array_flags(proxy, opcode, newIface, newVersion, flags, args);
  int err = errno;
  connection->MarkDirty();
  if (destroy) connection->Forget(data);
  if (newIface == nullptr) return env.Undefined();
  if (created == nullptr) ThrowErrno(env, "wl_proxy_marshal_array_flags", err != 0 ? err : ENOMEM);
  Napi::Object wrapper = connection->Adopt(created, newIface);
  // The new proxy's dispatcher in the same call: a frame callback is a new proxy per frame, and
  // each separate call into the addon costs more than the request itself on a busy machine.
  if (info.Length() > 5 && info[5].IsFunction()) {
    ProxyData* createdData = ProxyWrap::Unwrap(wrapper)->Data();
    createdData->dispatch = Napi::Persistent(info[5].As<Napi::Function>());
    wl_proxy_add_dispatcher(created, ClientDispatch, nullptr, createdData);
  }
  return wrapper;
}

// wl_surface attach + damage_buffer per box + commit in one call: a guest frame's whole commit.
// Each call into the addon costs more than the request it marshals when the frame's wake-up
// starts on cold caches (README, Performance), and a frame is three or more requests.
void ProxyWrap::CommitFrame(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  constexpr uint32_t kAttach = 1, kCommit = 6, kDamageBuffer = 9;
  // The most boxes one commit sends (the plugin's damage accumulator holds 8).
  constexpr uint32_t kMaxBoxes = 64;
  if (data_ != nullptr && strcmp(data_->iface->name, "wl_surface") != 0) {
    ThrowTypeError(env, std::string("commitFrame needs a wl_surface, not a ") + data_->iface->name);
  }
  if (version_ < 4) ThrowTypeError(env, "commitFrame needs wl_surface version 4 (damage_buffer)");
  ProxyData* buffer = nullptr;
  if (!info[0].IsNull()) buffer = ProxyArg(env, info[0], ArgName{"wl_surface", "attach", 0});
  if (!info[1].IsTypedArray() ||
      info[1].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    ThrowTypeError(env, "boxes must be an Int32Array (x0, y0, x1, y1 per box)");
  }
  Napi::Int32Array boxes = info[1].As<Napi::Int32Array>();
  uint32_t count = Uint32Arg(info[2], "count");
  if (count > kMaxBoxes || static_cast<size_t>(count) * 4 > boxes.ElementLength()) {
    ThrowRangeError(env, "count exceeds the boxes given (or 64)");
  }
  if (data_ == nullptr) return;  // a dead proxy: requests without a new_id do nothing
  if (buffer != nullptr) {
    if (buffer->connection != data_->connection) {
      ThrowTypeError(env, "buffer belongs to another connection");
    }
    if (strcmp(buffer->iface->name, "wl_buffer") != 0) {
      ThrowTypeError(env, std::string("buffer must be a wl_buffer, got ") + buffer->iface->name);
    }
  }
  for (uint32_t i = 0; i < count; i++) {
    const int32_t* box = boxes.Data() + 4 * i;
    if (box[2] < box[0] || box[3] < box[1]) ThrowRangeError(env, "a box ends before it starts");
  }
  wl_proxy* surface = data_->proxy;
  uint32_t version = version_;
  wl_proxy_marshal_flags(surface, kAttach, nullptr, version, 0,
                         buffer != nullptr ? buffer->proxy : nullptr, 0, 0);
  for (uint32_t i = 0; i < count; i++) {
    const int32_t* box = boxes.Data() + 4 * i;
    // Subtracting in 64 bits: ends and starts are any int32 the caller checked above.
    int64_t width = static_cast<int64_t>(box[2]) - box[0];
    int64_t height = static_cast<int64_t>(box[3]) - box[1];
    wl_proxy_marshal_flags(surface, kDamageBuffer, nullptr, version, 0, box[0], box[1],
                           static_cast<int32_t>(std::min<int64_t>(width, INT32_MAX)),
                           static_cast<int32_t>(std::min<int64_t>(height, INT32_MAX)));
  }
  wl_proxy_marshal_flags(surface, kCommit, nullptr, version, 0);
  data_->connection->MarkDirty();
}

void ProxyWrap::SetDispatcher(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsFunction()) ThrowTypeError(env, "dispatch must be a function");
  if (data_ == nullptr) throw PlainError(env, "the proxy was destroyed", "ERR_WAYLAND_DESTROYED");
  // libwayland keeps the wl_display's own listener (error, delete_id): a dispatcher set here is
  // accepted for uniformity with other proxies but never called; errors arrive through onError.
  if (data_->isDisplay) return;
  bool first = data_->dispatch.IsEmpty();
  data_->dispatch = Napi::Persistent(info[0].As<Napi::Function>());
  if (first && wl_proxy_add_dispatcher(data_->proxy, ClientDispatch, nullptr, data_) != 0) {
    data_->dispatch.Reset();
    throw PlainError(env, "the proxy already has a listener", "ERR_WAYLAND_LISTENER");
  }
}

void ProxyWrap::Destroy(const Napi::CallbackInfo& info) {
  if (data_ == nullptr) return;
  if (data_->isDisplay) {
    ThrowTypeError(info.Env(), "the wl_display proxy is destroyed by disconnect()");
  }
  ProxyData* data = data_;
  wl_proxy_destroy(data->proxy);
  data->connection->Forget(data);
}

int ClientDispatch(const void* /*implementation*/, void* target, uint32_t opcode,
                   const wl_message* message, wl_argument* args) {
  auto* proxy = static_cast<wl_proxy*>(target);
  ProxyData* data = DataOf(proxy);
  MessageShape shape;
  if (!ParseMessage(*message, &shape)) return 0;
  if (data == nullptr || data->dispatch.IsEmpty() || !data->connection->JsAllowed()) {
    CloseReceivedFds(shape, args);
    return 0;
  }
  Connection* connection = data->connection;
  Napi::Env env = data->dispatch.Env();
  Napi::HandleScope scope(env);
  // The listener may destroy the proxy (wl_callback.done does): keep locals, not `data`.
  Napi::Function dispatch = data->dispatch.Value();
  Napi::Value self = data->wrapper.Value();
  [[maybe_unused]] Napi::Object keepConnection = connection->Value();
  DeliverMessage(
      env, dispatch, self, opcode, shape, args,
      [&](const ArgSpec& spec, const wl_argument& arg) -> Napi::Value {
        if (spec.type == 'o') {
          ProxyData* object = DataOf(reinterpret_cast<wl_proxy*>(arg.o));
          return object != nullptr ? Napi::Value(object->wrapper.Value()) : env.Null();
        }
        auto* created = reinterpret_cast<wl_proxy*>(arg.o);
        if (created == nullptr) return env.Null();
        const wl_interface* iface =
            spec.iface != nullptr ? FindInterface(spec.iface->name) : nullptr;
        return connection->Adopt(created, iface != nullptr ? iface : spec.iface);
      },
      [&](const Napi::Error& error) { connection->ListenerFailed(error); });
  return 0;
}

// The Connection constructor owns `display` from its first line and disconnects on failure.
Napi::Value Wrap(Napi::Env env, wl_display* display) {
  return StateOf(env).connectionClass.New({Napi::External<wl_display>::New(env, display)});
}

Napi::Value Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name;
  bool named = !info[0].IsUndefined() && !info[0].IsNull();
  if (named) {
    if (!info[0].IsString()) ThrowTypeError(env, "name must be a string");
    name = info[0].As<Napi::String>().Utf8Value();
    if (name.empty() || name.find('\0') != std::string::npos) {
      ThrowTypeError(env, "name must be a non-empty string without NUL");
    }
  }
  errno = 0;
  wl_display* display = wl_display_connect(named ? name.c_str() : nullptr);
  if (display == nullptr) ThrowErrno(env, "wl_display_connect", errno != 0 ? errno : ENOENT);
  return Wrap(env, display);
}

Napi::Value ConnectToFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info[0], "fd");
  errno = 0;
  wl_display* display = wl_display_connect_to_fd(fd);  // closes fd on failure
  if (display == nullptr) {
    ThrowErrno(env, "wl_display_connect_to_fd", errno != 0 ? errno : ENOMEM);
  }
  return Wrap(env, display);
}

}  // namespace

}  // namespace guestfb::wayland

namespace guestfb {

void InitWaylandClient(Napi::Env env, Napi::Object exports) {
  wl_log_set_handler_client(wayland::LogHandler);
  wayland::EnvState& state = wayland::StateOf(env);
  state.connectionClass = Napi::Persistent(wayland::Connection::DefineClass(env));
  state.proxyClass = Napi::Persistent(wayland::ProxyWrap::DefineClass(env));
  exports.Set("connect", Napi::Function::New(env, wayland::Connect, "connect"));
  exports.Set("connectToFd", Napi::Function::New(env, wayland::ConnectToFd, "connectToFd"));
}

}  // namespace guestfb
