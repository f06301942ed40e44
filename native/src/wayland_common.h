// Shared pieces of the libwayland bindings: the run-time interface registry, message signature
// parsing, argument conversion, per-env state and the guard that keeps JS exceptions out of
// libwayland. Only wayland-util.h is included here so server and client files stay separate.
#pragma once

#include <napi.h>
#include <uv.h>
#include <wayland-util.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace guestfb::wayland {

// ---- interface registry (process-wide; tables live until the process exits) ----

// The defined interface named `name`, or nullptr (unknown or only referenced so far).
const wl_interface* FindInterface(const std::string& name);
// True when `iface` was defined by defineInterfaces (its tables are complete).
bool IsDefined(const wl_interface* iface);

// ---- message signatures ----

constexpr int kMaxArgs = 20;  // WL_CLOSURE_MAX_ARGS in libwayland

struct ArgSpec {
  char type;                  // one of i u f s o n a h
  bool nullable;              // '?' prefix
  const wl_interface* iface;  // messages' types[] entry, may be null
};

struct MessageShape {
  int since = 1;
  int count = 0;
  ArgSpec args[kMaxArgs];
};

// Parses a libwayland signature (already validated when defined); false if malformed.
bool ParseMessage(const wl_message& message, MessageShape* shape);

// ---- argument conversion ----

// Storage that must outlive a wl_argument array built from JS values. Reserved on first use
// (then never reallocated, so pointers into it stay valid): most requests carry no string or
// array and so allocate nothing here.
struct ArgStorage {
  std::vector<std::string> strings;
  std::vector<wl_array> arrays;
};

// Names one argument in error messages ("wl_surface.attach argument 0"). The text is built only
// when an error needs it: encoding a request allocates no string.
struct ArgName {
  const char* interfaceName;
  const char* messageName;
  int index;
  std::string Text() const;
};
inline std::string operator+(const ArgName& name, const char* tail) { return name.Text() + tail; }
inline std::string operator+(const ArgName& name, const std::string& tail) {
  return name.Text() + tail;
}

// Converts one JS value for a non-object argument (i u f s a h). Throws TypeError/RangeError.
// `what` names the argument in error messages.
void EncodeScalar(Napi::Env env, const ArgSpec& spec, const Napi::Value& value, const ArgName& what,
                  ArgStorage& storage, wl_argument* out);

// Converts one non-object argument (i u f s a h) to JS. Fds become plain numbers (caller owns).
Napi::Value DecodeScalar(Napi::Env env, const ArgSpec& spec, const wl_argument& arg);

// Closes the received fds of a message that could not be delivered to JS.
void CloseReceivedFds(const MessageShape& shape, const wl_argument* args);

// ---- whole messages ----

// Request (`request`) or event `opcode` of `iface`, parsed into `shape`. Throws RangeError for an
// opcode the interface lacks.
const wl_message& MessageAt(Napi::Env env, const wl_interface* iface, bool request, uint32_t opcode,
                            MessageShape* shape);

// Throws unless an object of `version` (0: not checked) has `message` and `values` holds one value
// per argument. `holder` names the object in the version error ("proxy", "resource").
void CheckCall(Napi::Env env, const wl_interface* iface, const wl_message& message,
               const MessageShape& shape, uint32_t version, const char* holder,
               const Napi::Array& values);

// Sets `out` for an object ('o', not a null nullable one) or new_id ('n') argument. Throws.
using ObjectEncoder = std::function<void(const ArgSpec& spec, const Napi::Value& value,
                                         const ArgName& what, wl_argument* out)>;

// Converts `values` to `args`: objects and new ids through `encodeObject`, a null nullable object
// to nullptr, the rest with EncodeScalar. Throws.
void EncodeArgs(Napi::Env env, const wl_interface* iface, const wl_message& message,
                const MessageShape& shape, const Napi::Array& values, ArgStorage& storage,
                wl_argument* args, const ObjectEncoder& encodeObject);

// The JS value of a received object ('o') or new_id ('n') argument.
using ObjectDecoder = std::function<Napi::Value(const ArgSpec& spec, const wl_argument& arg)>;

// Calls `dispatch` on `self` with (opcode, values), the values converted from `args` (objects and
// new ids through `decodeObject`). An exception from the conversion or the call goes to
// `onError`; the fds of a message that never reached JS are closed first.
void DeliverMessage(Napi::Env env, const Napi::Function& dispatch, const Napi::Value& self,
                    uint32_t opcode, const MessageShape& shape, const wl_argument* args,
                    const ObjectDecoder& decodeObject,
                    const std::function<void(const Napi::Error&)>& onError);

// ---- per-env state ----

struct EnvState {
  Napi::FunctionReference serverDisplayClass;
  Napi::FunctionReference globalClass;
  Napi::FunctionReference clientClass;
  Napi::FunctionReference resourceClass;
  Napi::FunctionReference connectionClass;
  Napi::FunctionReference proxyClass;
};

// The state of `env`, created on first use and deleted when the env shuts down.
EnvState& StateOf(Napi::Env env);

// ---- calling JS from libwayland callbacks ----

// Reports an exception thrown by a JS callback to `handler` (if set and callable) or stderr.
// Never throws.
void ReportError(Napi::Env env, const Napi::FunctionReference& handler,
                 const std::vector<napi_value>& extraArgs, const Napi::Error& error,
                 const char* context);

// Text of an error for stderr.
std::string DescribeError(const Napi::Error& error);

// Closes a libuv handle allocated with `new T` and deletes it once libuv is done with it.
template <typename T>
void CloseAndDelete(T* handle) {
  if (handle == nullptr) return;
  uv_close(reinterpret_cast<uv_handle_t*>(handle),
           [](uv_handle_t* closed) { delete reinterpret_cast<T*>(closed); });
}

// Creates and starts a poll handle (readable on `fd`, calling `onPoll`) and a prepare handle
// (calling `onPrepare`), both with `data`. Returns 0, or a libuv error with nothing allocated.
int StartLoopHandles(uv_loop_t* loop, int fd, void* data, uv_poll_cb onPoll,
                     uv_prepare_cb onPrepare, uv_poll_t** poll, uv_prepare_t** prepare);

// An Error with `code` set (for failures that are neither type nor range errors).
Napi::Error PlainError(Napi::Env env, const std::string& message, const char* code);

// Reads an interface name argument and returns its defined table; throws if unknown.
const wl_interface* InterfaceArg(const Napi::Value& value, const char* what);

}  // namespace guestfb::wayland
