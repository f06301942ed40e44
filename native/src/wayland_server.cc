// libwayland-server bindings: a wl_display polled from Node's libuv loop, globals, clients and
// resources whose requests arrive in JS decoded per the message signature.
//
// Re-entrancy: JS runs inside libwayland calls (dispatch, destroy listeners). Anything JS asks for
// that would free libwayland state under a running libwayland call (destroying a client or the
// display) is deferred until the outermost libwayland call returns; see ServerDisplay::Enter.
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <wayland-server-core.h>

#include <algorithm>

#include "common.h"
#include "wayland_common.h"

namespace guestfb::wayland {

namespace {

class ServerDisplay;
class ClientWrap;
class ResourceWrap;
class GlobalWrap;

// Native state of one wl_client, created by the display's client-created signal.
struct ClientData {
  wl_listener destroyListener{};  // also identifies a client as ours
  wl_client* client = nullptr;
  ServerDisplay* display = nullptr;
  uint32_t id = 0;
  ClientWrap* wrap = nullptr;
  Napi::ObjectReference wrapper;  // strong while the client lives
  std::vector<Napi::FunctionReference> destroyListeners;
  bool destroying = false;
};

// Native state of one wl_resource created by createResource.
struct ResourceData {
  wl_listener destroyListener{};  // also identifies a resource as ours
  wl_resource* resource = nullptr;
  const wl_interface* iface = nullptr;
  ServerDisplay* display = nullptr;
  ResourceWrap* wrap = nullptr;
  Napi::ObjectReference wrapper;  // strong while the resource lives
  Napi::FunctionReference dispatch;
  Napi::FunctionReference onDestroy;
};

void ClientDestroyed(wl_listener* listener, void* data);
void ResourceDestroyed(wl_listener* listener, void* data);

ClientData* DataOf(wl_client* client) {
  wl_listener* listener = wl_client_get_destroy_listener(client, ClientDestroyed);
  if (listener == nullptr) return nullptr;
  ClientData* data;
  return wl_container_of(listener, data, destroyListener);
}

ResourceData* DataOf(wl_resource* resource) {
  wl_listener* listener = wl_resource_get_destroy_listener(resource, ResourceDestroyed);
  if (listener == nullptr) return nullptr;
  ResourceData* data;
  return wl_container_of(listener, data, destroyListener);
}

// ---------------------------------------------------------------------------------------------

class ServerDisplay : public Napi::ObjectWrap<ServerDisplay> {
 public:
  static Napi::Function DefineClass(Napi::Env env) {
    return ObjectWrap::DefineClass(env, "NativeServerDisplay",
                                   {
                                       InstanceMethod<&ServerDisplay::AddSocket>("addSocket"),
                                       InstanceMethod<&ServerDisplay::CreateClient>("createClient"),
                                       InstanceMethod<&ServerDisplay::CreateGlobal>("createGlobal"),
                                       InstanceMethod<&ServerDisplay::OnError>("onError"),
                                       InstanceMethod<&ServerDisplay::FlushClients>("flushClients"),
                                       InstanceMethod<&ServerDisplay::NextSerial>("nextSerial"),
                                       InstanceMethod<&ServerDisplay::Destroy>("destroy"),
                                       InstanceAccessor<&ServerDisplay::Destroyed>("destroyed"),
                                   });
  }

  explicit ServerDisplay(const Napi::CallbackInfo& info);
  ~ServerDisplay() override;

  // Counts nested libwayland calls that may run JS; deferred work runs when the count drops to 0.
  class Enter {
   public:
    explicit Enter(ServerDisplay* display) : display_(display) { display_->depth_++; }
    ~Enter() {
      if (--display_->depth_ == 0) display_->RunDeferred();
    }
    Enter(const Enter&) = delete;
    Enter& operator=(const Enter&) = delete;

   private:
    ServerDisplay* display_;
  };

  bool JsAllowed() const { return jsAllowed_; }
  bool Alive() const { return display_ != nullptr && !destroyRequested_; }
  wl_display* Display() const { return display_; }

  // The JS wrapper of a client, created on first use.
  Napi::Value WrapperOf(ClientData* client);

  // Reports a JS exception; for request and bind handlers the client gets an implementation
  // error so the display lives on.
  void HandlerFailed(const Napi::Error& error, wl_client* client, bool postToClient,
                     const std::string& where);

  void RequestClientDestroy(ClientData* client);
  void ForgetClient(ClientData* client) {
    deferredClientDestroys_.erase(
        std::remove(deferredClientDestroys_.begin(), deferredClientDestroys_.end(), client),
        deferredClientDestroys_.end());
  }
  void ForgetGlobal(GlobalWrap* global) {
    globals_.erase(std::remove(globals_.begin(), globals_.end(), global), globals_.end());
  }
  uint32_t TakeClientId() { return nextClientId_++; }

 private:
  Napi::Value AddSocket(const Napi::CallbackInfo& info);
  Napi::Value CreateClient(const Napi::CallbackInfo& info);
  Napi::Value CreateGlobal(const Napi::CallbackInfo& info);
  void OnError(const Napi::CallbackInfo& info);
  void FlushClients(const Napi::CallbackInfo& info);
  Napi::Value NextSerial(const Napi::CallbackInfo& info);
  void Destroy(const Napi::CallbackInfo& info);
  Napi::Value Destroyed(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), !Alive());
  }

  void RequireAlive(Napi::Env env) const {
    if (!Alive()) throw PlainError(env, "the wl_display was destroyed", "ERR_WAYLAND_DESTROYED");
  }

  static void OnPoll(uv_poll_t* handle, int status, int events);
  static void OnPrepare(uv_prepare_t* handle);
  static void OnClientCreated(wl_listener* listener, void* data);
  static void OnEnvCleanup(void* arg);

  // Dispatches (when readable) and flushes, with a callback scope so promise jobs run after.
  void RunLoopWork(bool dispatch);
  void RunDeferred();
  void DestroyNow(bool jsAllowed);

  wl_display* display_ = nullptr;
  wl_event_loop* loop_ = nullptr;
  uv_poll_t* poll_ = nullptr;
  uv_prepare_t* prepare_ = nullptr;
  Napi::ObjectReference self_;  // strong while the display lives: it is a server
  Napi::FunctionReference onError_;
  std::unique_ptr<Napi::AsyncContext> asyncContext_;
  wl_listener clientCreated_{};
  std::vector<GlobalWrap*> globals_;
  std::vector<ClientData*> deferredClientDestroys_;
  int depth_ = 0;
  bool destroyRequested_ = false;
  bool jsAllowed_ = true;
  bool cleanupHookAdded_ = false;
  uint32_t nextGlobalName_ = 1;  // libwayland numbers globals 1, 2, ... per display
  uint32_t nextClientId_ = 1;

  friend class GlobalWrap;
};

// ---------------------------------------------------------------------------------------------

class GlobalWrap : public Napi::ObjectWrap<GlobalWrap> {
 public:
  static Napi::Function DefineClass(Napi::Env env) {
    return ObjectWrap::DefineClass(env, "NativeGlobal",
                                   {
                                       InstanceAccessor<&GlobalWrap::Name>("name"),
                                       InstanceMethod<&GlobalWrap::Remove>("remove"),
                                       InstanceMethod<&GlobalWrap::Destroy>("destroy"),
                                   });
  }

  explicit GlobalWrap(const Napi::CallbackInfo& info) : ObjectWrap(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) {
      ThrowTypeError(info.Env(), "NativeGlobal is created by NativeServerDisplay.createGlobal");
    }
  }

  // Called by the display: `global` was created with this as its data.
  void Attach(ServerDisplay* display, wl_global* global, uint32_t name, Napi::Function bind) {
    display_ = display;
    global_ = global;
    name_ = name;
    bind_ = Napi::Persistent(bind);
    self_ = Napi::Persistent(Value());
  }

  // The display destroyed the wl_global (wl_display_destroy).
  void Detach() {
    global_ = nullptr;
    display_ = nullptr;
    bind_.Reset();
    self_.Reset();
  }

  static void Bind(wl_client* client, void* data, uint32_t version, uint32_t id) {
    auto* self = static_cast<GlobalWrap*>(data);
    ServerDisplay* display = self->display_;
    ClientData* clientData = DataOf(client);
    if (display == nullptr || !display->JsAllowed() || clientData == nullptr) return;
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    // The handler may destroy the global: keep what is needed afterwards in locals.
    [[maybe_unused]] Napi::Object keepAlive = self->Value();
    std::string where = std::string("bind of ") + self->interfaceName_ + " global";
    try {
      Napi::Function bind = self->bind_.Value();
      Napi::Value clientWrapper = display->WrapperOf(clientData);
      bind.Call(env.Undefined(),
                {clientWrapper, Napi::Number::New(env, version), Napi::Number::New(env, id)});
    } catch (const Napi::Error& error) {
      display->HandlerFailed(error, client, true, where);
    }
  }

  std::string interfaceName_;

 private:
  Napi::Value Name(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), name_); }

  void Remove(const Napi::CallbackInfo&) {
    if (global_ == nullptr || removed_) return;
    removed_ = true;
    wl_global_remove(global_);
  }

  void Destroy(const Napi::CallbackInfo&) {
    if (global_ == nullptr) return;
    ServerDisplay* display = display_;
    wl_global* global = global_;
    display->ForgetGlobal(this);
    [[maybe_unused]] Napi::Object keep = Value();
    Detach();
    wl_global_destroy(global);
  }

  ServerDisplay* display_ = nullptr;
  wl_global* global_ = nullptr;
  uint32_t name_ = 0;
  bool removed_ = false;
  Napi::FunctionReference bind_;
  Napi::ObjectReference self_;  // strong while the wl_global exists
};

// ---------------------------------------------------------------------------------------------

class ClientWrap : public Napi::ObjectWrap<ClientWrap> {
 public:
  static Napi::Function DefineClass(Napi::Env env) {
    return ObjectWrap::DefineClass(
        env, "NativeClient",
        {
            InstanceAccessor<&ClientWrap::Id>("id"),
            InstanceAccessor<&ClientWrap::Destroyed>("destroyed"),
            InstanceMethod<&ClientWrap::Credentials>("credentials"),
            InstanceMethod<&ClientWrap::CreateResource>("createResource"),
            InstanceMethod<&ClientWrap::PostImplementationError>("postImplementationError"),
            InstanceMethod<&ClientWrap::PostNoMemory>("postNoMemory"),
            InstanceMethod<&ClientWrap::OnDestroy>("onDestroy"),
            InstanceMethod<&ClientWrap::GetObject>("getObject"),
            InstanceMethod<&ClientWrap::Flush>("flush"),
            InstanceMethod<&ClientWrap::Destroy>("destroy"),
        });
  }

  explicit ClientWrap(const Napi::CallbackInfo& info) : ObjectWrap(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) {
      ThrowTypeError(info.Env(), "NativeClient is created by the server display");
    }
    data_ = info[0].As<Napi::External<ClientData>>().Data();
    id_ = data_->id;
  }

  void Detach() { data_ = nullptr; }
  ClientData* Data() const { return data_; }

 private:
  bool Alive() const { return data_ != nullptr && !data_->destroying; }
  void RequireAlive(Napi::Env env) const {
    if (!Alive()) throw PlainError(env, "the wl_client was destroyed", "ERR_WAYLAND_DESTROYED");
  }

  Napi::Value Id(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), id_); }
  Napi::Value Destroyed(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), !Alive());
  }

  Napi::Value Credentials(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireAlive(env);
    pid_t pid = 0;
    uid_t uid = 0;
    gid_t gid = 0;
    wl_client_get_credentials(data_->client, &pid, &uid, &gid);
    Napi::Object result = Napi::Object::New(env);
    result.Set("pid", Napi::Number::New(env, pid));
    result.Set("uid", Napi::Number::New(env, uid));
    result.Set("gid", Napi::Number::New(env, gid));
    return result;
  }

  Napi::Value CreateResource(const Napi::CallbackInfo& info);

  void PostImplementationError(const Napi::CallbackInfo& info) {
    if (!info[0].IsString()) ThrowTypeError(info.Env(), "message must be a string");
    if (!Alive()) return;
    std::string message = info[0].As<Napi::String>().Utf8Value();
    wl_client_post_implementation_error(data_->client, "%s", message.c_str());
  }

  void PostNoMemory(const Napi::CallbackInfo&) {
    if (!Alive()) return;
    wl_client_post_no_memory(data_->client);
  }

  void OnDestroy(const Napi::CallbackInfo& info) {
    if (!info[0].IsFunction()) ThrowTypeError(info.Env(), "listener must be a function");
    RequireAlive(info.Env());
    data_->destroyListeners.push_back(Napi::Persistent(info[0].As<Napi::Function>()));
  }

  Napi::Value GetObject(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t id = Uint32Arg(info[0], "id");
    if (!Alive()) return env.Null();
    wl_resource* resource = wl_client_get_object(data_->client, id);
    ResourceData* resourceData = resource != nullptr ? DataOf(resource) : nullptr;
    if (resourceData == nullptr || resourceData->wrapper.IsEmpty()) return env.Null();
    return resourceData->wrapper.Value();
  }

  void Flush(const Napi::CallbackInfo&) {
    if (!Alive()) return;
    wl_client_flush(data_->client);
  }

  void Destroy(const Napi::CallbackInfo&) {
    if (!Alive()) return;
    data_->display->RequestClientDestroy(data_);
  }

  ClientData* data_ = nullptr;
  uint32_t id_ = 0;
};

// ---------------------------------------------------------------------------------------------

class ResourceWrap : public Napi::ObjectWrap<ResourceWrap> {
 public:
  static Napi::Function DefineClass(Napi::Env env) {
    return ObjectWrap::DefineClass(
        env, "NativeResource",
        {
            InstanceAccessor<&ResourceWrap::Id>("id"),
            InstanceAccessor<&ResourceWrap::Version>("version"),
            InstanceAccessor<&ResourceWrap::InterfaceName>("interfaceName"),
            InstanceAccessor<&ResourceWrap::Client>("client"),
            InstanceAccessor<&ResourceWrap::Alive>("alive"),
            InstanceMethod<&ResourceWrap::PostEvent>("postEvent"),
            InstanceMethod<&ResourceWrap::PostError>("postError"),
            InstanceMethod<&ResourceWrap::Destroy>("destroy"),
        });
  }

  explicit ResourceWrap(const Napi::CallbackInfo& info) : ObjectWrap(info) {
    if (info.Length() != 2 || !info[0].IsExternal() || !info[1].IsObject()) {
      ThrowTypeError(info.Env(), "NativeResource is created by NativeClient.createResource");
    }
    data_ = info[0].As<Napi::External<ResourceData>>().Data();
    client_ = Napi::Persistent(info[1].As<Napi::Object>());
    id_ = wl_resource_get_id(data_->resource);
    version_ = wl_resource_get_version(data_->resource);
    interfaceName_ = wl_resource_get_class(data_->resource);
    info.This().As<Napi::Object>().Set("owner", info.Env().Undefined());
  }

  void Detach() { data_ = nullptr; }
  ResourceData* Data() const { return data_; }

 private:
  Napi::Value Id(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), id_); }
  Napi::Value Version(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), version_);
  }
  Napi::Value InterfaceName(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), interfaceName_);
  }
  Napi::Value Client(const Napi::CallbackInfo&) { return client_.Value(); }
  Napi::Value Alive(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), data_ != nullptr);
  }

  Napi::Value PostEvent(const Napi::CallbackInfo& info);

  void PostError(const Napi::CallbackInfo& info) {
    uint32_t code = Uint32Arg(info[0], "code");
    if (!info[1].IsString()) ThrowTypeError(info.Env(), "message must be a string");
    if (data_ == nullptr) return;
    std::string message = info[1].As<Napi::String>().Utf8Value();
    wl_resource_post_error(data_->resource, code, "%s", message.c_str());
  }

  void Destroy(const Napi::CallbackInfo&) {
    if (data_ == nullptr) return;
    ServerDisplay::Enter enter(data_->display);
    wl_resource_destroy(data_->resource);
  }

  ResourceData* data_ = nullptr;
  Napi::ObjectReference client_;
  uint32_t id_ = 0;
  int version_ = 0;
  std::string interfaceName_;
};

// The resource wrapper passed as an `o`/`n` argument, or nullptr. Throws TypeError for others.
ResourceData* ResourceArg(Napi::Env env, const Napi::Value& value, const ArgName& what) {
  if (!value.IsObject() ||
      !value.As<Napi::Object>().InstanceOf(StateOf(env).resourceClass.Value())) {
    ThrowTypeError(env, what + " must be a NativeResource");
  }
  ResourceWrap* wrap = nullptr;
  try {
    wrap = ResourceWrap::Unwrap(value.As<Napi::Object>());
  } catch (const Napi::Error&) {
  }
  if (wrap == nullptr) ThrowTypeError(env, what + " must be a NativeResource");
  return wrap->Data();
}

// ---------------------------------------------------------------------------------------------
// Dispatch and destruction callbacks from libwayland

int Dispatch(const void* /*implementation*/, void* target, uint32_t opcode,
             const wl_message* message, wl_argument* args) {
  auto* resource = static_cast<wl_resource*>(target);
  ResourceData* data = DataOf(resource);
  MessageShape shape;
  if (!ParseMessage(*message, &shape)) return 0;
  if (data == nullptr || data->dispatch.IsEmpty() || !data->display->JsAllowed()) {
    CloseReceivedFds(shape, args);
    return 0;
  }
  ServerDisplay* display = data->display;
  Napi::Env env = data->dispatch.Env();
  Napi::HandleScope scope(env);
  // The handler may destroy the resource (destructor requests do): nothing below may touch
  // `data` or `resource` after the call, so keep what the error path needs.
  wl_client* client = wl_resource_get_client(resource);
  std::string where = std::string(wl_resource_get_class(resource)) + "@" +
                      std::to_string(wl_resource_get_id(resource)) + "." + message->name;
  Napi::Function dispatch = data->dispatch.Value();
  Napi::Value self = data->wrapper.Value();
  DeliverMessage(
      env, dispatch, self, opcode, shape, args,
      [&](const ArgSpec& spec, const wl_argument& arg) -> Napi::Value {
        if (spec.type == 'n') return Napi::Number::New(env, arg.n);
        auto* object = static_cast<wl_resource*>(static_cast<void*>(arg.o));
        ResourceData* objectData = object != nullptr ? DataOf(object) : nullptr;
        return objectData != nullptr && !objectData->wrapper.IsEmpty()
                   ? Napi::Value(objectData->wrapper.Value())
                   : env.Null();
      },
      [&](const Napi::Error& error) { display->HandlerFailed(error, client, true, where); });
  return 0;
}

void ResourceDestroyed(wl_listener* listener, void* /*data*/) {
  ResourceData* data;
  data = wl_container_of(listener, data, destroyListener);
  wl_list_remove(&listener->link);
  ServerDisplay* display = data->display;
  if (data->wrap != nullptr) data->wrap->Detach();
  if (!data->onDestroy.IsEmpty() && display->JsAllowed()) {
    Napi::Env env = data->onDestroy.Env();
    Napi::HandleScope scope(env);
    try {
      Napi::Function onDestroy = data->onDestroy.Value();
      onDestroy.Call(data->wrapper.IsEmpty() ? env.Undefined() : data->wrapper.Value(), {});
    } catch (const Napi::Error& error) {
      display->HandlerFailed(error, nullptr, false, "resource destroy listener");
    }
  }
  delete data;
}

void ClientDestroyed(wl_listener* listener, void* /*data*/) {
  ClientData* data;
  data = wl_container_of(listener, data, destroyListener);
  ServerDisplay* display = data->display;
  data->destroying = true;
  display->ForgetClient(data);
  if (!data->destroyListeners.empty() && display->JsAllowed()) {
    Napi::Env env = data->destroyListeners.front().Env();
    Napi::HandleScope scope(env);
    for (Napi::FunctionReference& destroyListener : data->destroyListeners) {
      try {
        Napi::Function listener = destroyListener.Value();
        listener.Call(env.Undefined(), {});
      } catch (const Napi::Error& error) {
        display->HandlerFailed(error, nullptr, false, "client destroy listener");
      }
    }
  }
  if (data->wrap != nullptr) data->wrap->Detach();
  delete data;
}

// ---------------------------------------------------------------------------------------------

ServerDisplay::ServerDisplay(const Napi::CallbackInfo& info) : ObjectWrap(info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsExternal()) {
    ThrowTypeError(env, "use createServerDisplay()");
  }
  uv_loop_t* uvLoop = nullptr;
  if (napi_get_uv_event_loop(env, &uvLoop) != napi_ok) {
    throw PlainError(env, "no libuv loop", "ERR_WAYLAND_NO_LOOP");
  }
  display_ = wl_display_create();
  if (display_ == nullptr) ThrowErrno(env, "wl_display_create", errno != 0 ? errno : ENOMEM);
  loop_ = wl_display_get_event_loop(display_);
  clientCreated_.notify = OnClientCreated;
  wl_display_add_client_created_listener(display_, &clientCreated_);

  int status = StartLoopHandles(uvLoop, wl_event_loop_get_fd(loop_), this, OnPoll, OnPrepare,
                                &poll_, &prepare_);
  if (status != 0) {
    wl_display_destroy(display_);
    display_ = nullptr;
    ThrowErrno(env, "uv_poll_init", -status);
  }

  asyncContext_ = std::make_unique<Napi::AsyncContext>(env, "guestfb.wl_display");
  self_ = Napi::Persistent(info.This().As<Napi::Object>());
  napi_add_env_cleanup_hook(env, OnEnvCleanup, this);
  cleanupHookAdded_ = true;
}

ServerDisplay::~ServerDisplay() {
  if (display_ != nullptr) DestroyNow(false);
}

void ServerDisplay::OnEnvCleanup(void* arg) {
  auto* self = static_cast<ServerDisplay*>(arg);
  self->cleanupHookAdded_ = false;
  if (self->display_ != nullptr) self->DestroyNow(false);
}

void ServerDisplay::OnClientCreated(wl_listener* listener, void* data) {
  ServerDisplay* self;
  self = wl_container_of(listener, self, clientCreated_);
  auto* client = static_cast<wl_client*>(data);
  auto* clientData = new ClientData();
  clientData->client = client;
  clientData->display = self;
  clientData->id = self->TakeClientId();
  clientData->destroyListener.notify = ClientDestroyed;
  wl_client_add_destroy_listener(client, &clientData->destroyListener);
}

void ServerDisplay::OnPoll(uv_poll_t* handle, int status, int /*events*/) {
  auto* self = static_cast<ServerDisplay*>(handle->data);
  self->RunLoopWork(status == 0);
}

void ServerDisplay::OnPrepare(uv_prepare_t* handle) {
  static_cast<ServerDisplay*>(handle->data)->RunLoopWork(false);
}

void ServerDisplay::RunLoopWork(bool dispatch) {
  if (display_ == nullptr) return;
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  Napi::Object keepAlive = Value();
  Napi::CallbackScope callbackScope(env, OpenCallbackScope(env, keepAlive, *asyncContext_));
  Enter enter(this);
  if (dispatch) {
    wl_event_loop_dispatch(loop_, 0);
  } else {
    wl_event_loop_dispatch_idle(loop_);
  }
  if (display_ != nullptr) wl_display_flush_clients(display_);
}

void ServerDisplay::RunDeferred() {
  while (!deferredClientDestroys_.empty()) {
    ClientData* client = deferredClientDestroys_.front();
    deferredClientDestroys_.erase(deferredClientDestroys_.begin());
    Enter enter(this);
    wl_client_destroy(client->client);
  }
  if (destroyRequested_ && display_ != nullptr && depth_ == 0) DestroyNow(true);
}

void ServerDisplay::RequestClientDestroy(ClientData* client) {
  if (std::find(deferredClientDestroys_.begin(), deferredClientDestroys_.end(), client) ==
      deferredClientDestroys_.end()) {
    deferredClientDestroys_.push_back(client);
  }
  if (depth_ == 0) RunDeferred();
}

void ServerDisplay::DestroyNow(bool jsAllowed) {
  wl_display* display = display_;
  if (display == nullptr) return;
  jsAllowed_ = jsAllowed;
  destroyRequested_ = true;
  CloseAndDelete(poll_);
  poll_ = nullptr;
  CloseAndDelete(prepare_);
  prepare_ = nullptr;
  {
    depth_++;  // no deferred work from inside teardown
    wl_display_destroy_clients(display);
    for (GlobalWrap* global : globals_) global->Detach();
    globals_.clear();
    wl_list_remove(&clientCreated_.link);
    wl_display_destroy(display);
    display_ = nullptr;
    depth_--;
  }
  deferredClientDestroys_.clear();
  onError_.Reset();
  if (cleanupHookAdded_) {
    napi_remove_env_cleanup_hook(Env(), OnEnvCleanup, this);
    cleanupHookAdded_ = false;
  }
  if (!self_.IsEmpty()) self_.Reset();
}

Napi::Value ServerDisplay::WrapperOf(ClientData* client) {
  if (client->wrap == nullptr) {
    Napi::Env env = Env();
    Napi::Object wrapper =
        StateOf(env).clientClass.New({Napi::External<ClientData>::New(env, client)});
    client->wrap = ClientWrap::Unwrap(wrapper);
    client->wrapper = Napi::Persistent(wrapper);
  }
  return client->wrapper.Value();
}

void ServerDisplay::HandlerFailed(const Napi::Error& error, wl_client* client, bool postToClient,
                                  const std::string& where) {
  Napi::Env env = Env();
  ClientData* clientData = client != nullptr ? DataOf(client) : nullptr;
  if (postToClient && client != nullptr) {
    std::string message = error.Message();
    if (message.size() > 200) message.resize(200);
    wl_client_post_implementation_error(client, "exception in the handler of %s: %s", where.c_str(),
                                        message.c_str());
  }
  std::vector<napi_value> extra;
  try {
    extra.push_back(clientData != nullptr && !clientData->destroying ? WrapperOf(clientData)
                                                                     : env.Null());
  } catch (const Napi::Error&) {
    extra.push_back(env.Null());
  }
  ReportError(env, onError_, extra, error, where.c_str());
}

Napi::Value ServerDisplay::AddSocket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireAlive(env);
  if (info[0].IsUndefined() || info[0].IsNull()) {
    errno = 0;
    const char* name = wl_display_add_socket_auto(display_);
    if (name == nullptr) ThrowErrno(env, "wl_display_add_socket_auto", errno != 0 ? errno : EEXIST);
    return Napi::String::New(env, name);
  }
  if (!info[0].IsString()) ThrowTypeError(env, "name must be a string");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  if (name.empty() || name.find('\0') != std::string::npos) {
    ThrowTypeError(env, "name must be a non-empty string without NUL");
  }
  errno = 0;
  if (wl_display_add_socket(display_, name.c_str()) != 0) {
    ThrowErrno(env, "wl_display_add_socket", errno != 0 ? errno : EINVAL);
  }
  return Napi::String::New(env, name);
}

Napi::Value ServerDisplay::CreateClient(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info[0], "fd");
  if (!Alive()) {
    close(fd);
    RequireAlive(env);
  }
  // libwayland closes the fd on some failure paths and not on others; a socket check first
  // leaves only allocation failures, after which the fd's state is checked before closing.
  int type = 0;
  socklen_t length = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) != 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, "getsockopt", err);
  }
  wl_client* client = wl_client_create(display_, fd);
  if (client == nullptr) {
    int err = errno != 0 ? errno : ENOMEM;
    if (fcntl(fd, F_GETFD) >= 0) close(fd);
    ThrowErrno(env, "wl_client_create", err);
  }
  ClientData* data = DataOf(client);
  return WrapperOf(data);
}

Napi::Value ServerDisplay::CreateGlobal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireAlive(env);
  const wl_interface* iface = InterfaceArg(info[0], "interfaceName");
  uint32_t version = Uint32Arg(info[1], "version");
  if (version < 1 || version > static_cast<uint32_t>(iface->version)) {
    ThrowRangeError(env, std::string("version must be 1..") + std::to_string(iface->version) +
                             " for " + iface->name);
  }
  if (!info[2].IsFunction()) ThrowTypeError(env, "bind must be a function");
  Napi::Object wrapper = StateOf(env).globalClass.New({Napi::External<void>::New(env, nullptr)});
  GlobalWrap* global = GlobalWrap::Unwrap(wrapper);
  global->interfaceName_ = iface->name;
  wl_global* native =
      wl_global_create(display_, iface, static_cast<int>(version), global, GlobalWrap::Bind);
  if (native == nullptr) ThrowErrno(env, "wl_global_create", errno != 0 ? errno : ENOMEM);
  global->Attach(this, native, nextGlobalName_++, info[2].As<Napi::Function>());
  globals_.push_back(global);
  return wrapper;
}

void ServerDisplay::OnError(const Napi::CallbackInfo& info) {
  if (info[0].IsNull() || info[0].IsUndefined()) {
    onError_.Reset();
    return;
  }
  if (!info[0].IsFunction()) ThrowTypeError(info.Env(), "handler must be a function");
  onError_ = Napi::Persistent(info[0].As<Napi::Function>());
}

void ServerDisplay::FlushClients(const Napi::CallbackInfo&) {
  if (!Alive()) return;
  Enter enter(this);
  wl_display_flush_clients(display_);
}

Napi::Value ServerDisplay::NextSerial(const Napi::CallbackInfo& info) {
  RequireAlive(info.Env());
  return Napi::Number::New(info.Env(), wl_display_next_serial(display_));
}

void ServerDisplay::Destroy(const Napi::CallbackInfo&) {
  if (display_ == nullptr) return;
  destroyRequested_ = true;
  if (depth_ == 0) DestroyNow(true);
}

// ---------------------------------------------------------------------------------------------

Napi::Value ClientWrap::CreateResource(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireAlive(env);
  const wl_interface* iface = InterfaceArg(info[0], "interfaceName");
  uint32_t version = Uint32Arg(info[1], "version");
  if (version < 1 || version > static_cast<uint32_t>(iface->version)) {
    ThrowRangeError(env, std::string("version must be 1..") + std::to_string(iface->version) +
                             " for " + iface->name);
  }
  uint32_t id = Uint32Arg(info[2], "id");
  if (!info[3].IsFunction()) ThrowTypeError(env, "dispatch must be a function");
  bool hasOnDestroy = !info[4].IsUndefined() && !info[4].IsNull();
  if (hasOnDestroy && !info[4].IsFunction()) ThrowTypeError(env, "onDestroy must be a function");

  errno = 0;
  wl_resource* resource = wl_resource_create(data_->client, iface, static_cast<int>(version), id);
  if (resource == nullptr) ThrowErrno(env, "wl_resource_create", errno != 0 ? errno : EINVAL);
  auto* resourceData = new ResourceData();
  resourceData->resource = resource;
  resourceData->iface = iface;
  resourceData->display = data_->display;
  resourceData->destroyListener.notify = ResourceDestroyed;
  wl_resource_set_dispatcher(resource, Dispatch, nullptr, resourceData, nullptr);
  wl_resource_add_destroy_listener(resource, &resourceData->destroyListener);
  try {
    Napi::Object wrapper = StateOf(env).resourceClass.New(
        {Napi::External<ResourceData>::New(env, resourceData), Value()});
    resourceData->wrap = ResourceWrap::Unwrap(wrapper);
    resourceData->wrapper = Napi::Persistent(wrapper);
    resourceData->dispatch = Napi::Persistent(info[3].As<Napi::Function>());
    if (hasOnDestroy) resourceData->onDestroy = Napi::Persistent(info[4].As<Napi::Function>());
    return wrapper;
  } catch (...) {
    ServerDisplay::Enter enter(data_->display);
    wl_resource_destroy(resource);
    throw;
  }
}

Napi::Value ResourceWrap::PostEvent(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t opcode = Uint32Arg(info[0], "opcode");
  if (!info[1].IsArray()) ThrowTypeError(env, "args must be an array");
  if (data_ == nullptr) return env.Undefined();
  wl_resource* resource = data_->resource;
  const wl_interface* iface = data_->iface;
  MessageShape shape;
  const wl_message& message = MessageAt(env, iface, false, opcode, &shape);
  Napi::Array values = info[1].As<Napi::Array>();
  CheckCall(env, iface, message, shape, static_cast<uint32_t>(version_), "resource", values);
  wl_argument args[kMaxArgs];
  ArgStorage storage;
  wl_client* client = wl_resource_get_client(resource);
  EncodeArgs(
      env, iface, message, shape, values, storage, args,
      [&](const ArgSpec& spec, const Napi::Value& value, const ArgName& what, wl_argument* out) {
        ResourceData* object = ResourceArg(env, value, what);
        if (object == nullptr) ThrowTypeError(env, what + " is a destroyed resource");
        if (wl_resource_get_client(object->resource) != client) {
          ThrowTypeError(env, what + " belongs to another client");
        }
        if (spec.iface != nullptr &&
            strcmp(spec.iface->name, wl_resource_get_class(object->resource)) != 0) {
          ThrowTypeError(env, what + " must be a " + spec.iface->name + ", got " +
                                  wl_resource_get_class(object->resource));
        }
        out->o = reinterpret_cast<wl_object*>(object->resource);
      });
  wl_resource_post_event_array(resource, opcode, args);
  return env.Undefined();
}

Napi::Value CreateServerDisplay(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return StateOf(env).serverDisplayClass.New({Napi::External<void>::New(env, nullptr)});
}

}  // namespace

}  // namespace guestfb::wayland

namespace guestfb {

void InitWaylandServer(Napi::Env env, Napi::Object exports) {
  wayland::EnvState& state = wayland::StateOf(env);
  state.serverDisplayClass = Napi::Persistent(wayland::ServerDisplay::DefineClass(env));
  state.globalClass = Napi::Persistent(wayland::GlobalWrap::DefineClass(env));
  state.clientClass = Napi::Persistent(wayland::ClientWrap::DefineClass(env));
  state.resourceClass = Napi::Persistent(wayland::ResourceWrap::DefineClass(env));
  exports.Set("createServerDisplay",
              Napi::Function::New(env, wayland::CreateServerDisplay, "createServerDisplay"));
}

}  // namespace guestfb
