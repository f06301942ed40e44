// Run-time wl_interface / wl_message tables built from the scanner's specs, plus the argument
// conversion and per-env state shared by the server and client bindings.
#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "common.h"
#include "wayland_common.h"

namespace guestfb::wayland {

namespace {

// A wl_interface and what it takes to compare a redefinition. Records are never freed:
// libwayland objects point at the interface for as long as they live.
struct InterfaceRecord {
  wl_interface iface{};
  bool defined = false;
  std::string description;  // canonical text of the spec, to accept identical redefinitions
};

std::mutex registryMutex;

std::unordered_map<std::string, InterfaceRecord*>& Registry() {
  static auto* registry = new std::unordered_map<std::string, InterfaceRecord*>();
  return *registry;
}

// Record for `name`, creating an empty placeholder on first reference. Caller holds the mutex.
InterfaceRecord* RecordFor(const std::string& name) {
  auto& registry = Registry();
  auto found = registry.find(name);
  if (found != registry.end()) return found->second;
  auto* record = new InterfaceRecord();
  record->iface.name = strdup(name.c_str());
  registry.emplace(name, record);
  return record;
}

bool IsSignatureLetter(char c) { return strchr("iufsonah", c) != nullptr && c != '\0'; }

// A message as read from JS, validated, before it is committed to the registry.
struct PendingMessage {
  std::string name;
  std::string signature;
  std::vector<std::string> typeNames;  // "" for no type
};

struct PendingInterface {
  std::string name;
  uint32_t version = 0;
  std::vector<PendingMessage> requests;
  std::vector<PendingMessage> events;
  std::string description;
};

std::string StringProperty(const Napi::Object& object, const char* key, const std::string& where) {
  Napi::Value value = object.Get(key);
  if (!value.IsString()) ThrowTypeError(object.Env(), where + "." + key + " must be a string");
  std::string text = value.As<Napi::String>().Utf8Value();
  if (text.empty() || text.find('\0') != std::string::npos) {
    ThrowTypeError(object.Env(), where + "." + key + " must be a non-empty string without NUL");
  }
  return text;
}

PendingMessage ReadMessage(const Napi::Value& value, const std::string& where) {
  Napi::Env env = value.Env();
  if (!value.IsObject()) ThrowTypeError(env, where + " must be an object");
  Napi::Object object = value.As<Napi::Object>();
  PendingMessage message;
  message.name = StringProperty(object, "name", where);
  Napi::Value signatureValue = object.Get("signature");
  if (!signatureValue.IsString()) ThrowTypeError(env, where + ".signature must be a string");
  message.signature = signatureValue.As<Napi::String>().Utf8Value();

  // Grammar: digits (since), then letters each optionally preceded by '?'.
  const std::string& signature = message.signature;
  size_t position = 0;
  while (position < signature.size() && signature[position] >= '0' && signature[position] <= '9') {
    position++;
  }
  if (position > 9) ThrowTypeError(env, where + ".signature has an absurd since version");
  std::vector<char> letters;
  bool nullable = false;
  for (; position < signature.size(); position++) {
    char c = signature[position];
    if (c == '?' && !nullable) {
      nullable = true;
      continue;
    }
    if (!IsSignatureLetter(c) || (nullable && strchr("sona", c) == nullptr)) {
      ThrowTypeError(env, where + ".signature \"" + signature + "\" is malformed");
    }
    letters.push_back(c);
    nullable = false;
  }
  if (nullable) ThrowTypeError(env, where + ".signature ends with '?'");
  if (letters.size() > static_cast<size_t>(kMaxArgs)) {
    ThrowTypeError(env, where + ".signature has more than 20 arguments");
  }

  Napi::Value typesValue = object.Get("types");
  if (!typesValue.IsArray()) ThrowTypeError(env, where + ".types must be an array");
  Napi::Array types = typesValue.As<Napi::Array>();
  if (types.Length() != letters.size()) {
    ThrowTypeError(env, where + ".types must have one entry per signature letter (" +
                            std::to_string(letters.size()) + "), got " +
                            std::to_string(types.Length()));
  }
  for (uint32_t i = 0; i < types.Length(); i++) {
    Napi::Value type = types.Get(i);
    if (type.IsNull() || type.IsUndefined()) {
      message.typeNames.emplace_back();
      continue;
    }
    if (!type.IsString() || (letters[i] != 'o' && letters[i] != 'n')) {
      ThrowTypeError(env, where + ".types[" + std::to_string(i) +
                              "] must be null, or an interface name for an o/n argument");
    }
    std::string typeName = type.As<Napi::String>().Utf8Value();
    if (typeName.empty() || typeName.find('\0') != std::string::npos) {
      ThrowTypeError(env, where + ".types[" + std::to_string(i) + "] is not a valid name");
    }
    message.typeNames.push_back(std::move(typeName));
  }
  return message;
}

std::vector<PendingMessage> ReadMessages(const Napi::Object& spec, const char* key,
                                         const std::string& where) {
  Napi::Value value = spec.Get(key);
  if (!value.IsArray()) ThrowTypeError(spec.Env(), where + "." + key + " must be an array");
  Napi::Array array = value.As<Napi::Array>();
  if (array.Length() > 65535) ThrowRangeError(spec.Env(), where + "." + key + " is too long");
  std::vector<PendingMessage> messages;
  for (uint32_t i = 0; i < array.Length(); i++) {
    messages.push_back(
        ReadMessage(array.Get(i), where + "." + key + "[" + std::to_string(i) + "]"));
  }
  return messages;
}

void Describe(std::string& out, const std::vector<PendingMessage>& messages) {
  for (const PendingMessage& message : messages) {
    out += message.name + "(" + message.signature;
    for (const std::string& type : message.typeNames) out += "," + type;
    out += ");";
  }
}

// Allocates libwayland's message table. Caller holds the registry mutex.
const wl_message* BuildMessages(const std::vector<PendingMessage>& messages) {
  if (messages.empty()) return nullptr;
  auto* table = new wl_message[messages.size()];
  for (size_t i = 0; i < messages.size(); i++) {
    const PendingMessage& message = messages[i];
    size_t count = message.typeNames.size();
    auto** types = new const wl_interface*[count == 0 ? 1 : count]();
    for (size_t j = 0; j < count; j++) {
      if (!message.typeNames[j].empty()) types[j] = &RecordFor(message.typeNames[j])->iface;
    }
    table[i].name = strdup(message.name.c_str());
    table[i].signature = strdup(message.signature.c_str());
    table[i].types = types;
  }
  return table;
}

void DefineInterfaces(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) ThrowTypeError(env, "specs must be an array of InterfaceSpec");
  Napi::Array specs = info[0].As<Napi::Array>();
  std::vector<PendingInterface> pending;
  for (uint32_t i = 0; i < specs.Length(); i++) {
    std::string where = "specs[" + std::to_string(i) + "]";
    Napi::Value value = specs.Get(i);
    if (!value.IsObject()) ThrowTypeError(env, where + " must be an object");
    Napi::Object spec = value.As<Napi::Object>();
    PendingInterface item;
    item.name = StringProperty(spec, "name", where);
    where = item.name;
    item.version = Uint32Arg(spec.Get("version"), (where + ".version").c_str());
    if (item.version < 1) ThrowRangeError(env, where + ".version must be at least 1");
    item.requests = ReadMessages(spec, "requests", where);
    item.events = ReadMessages(spec, "events", where);
    item.description = std::to_string(item.version) + "|";
    Describe(item.description, item.requests);
    item.description += "|";
    Describe(item.description, item.events);
    for (const PendingInterface& other : pending) {
      if (other.name == item.name) ThrowTypeError(env, "interface " + item.name + " given twice");
    }
    pending.push_back(std::move(item));
  }

  std::lock_guard<std::mutex> lock(registryMutex);
  // Check everything before changing anything, so a failed call defines nothing.
  for (const PendingInterface& item : pending) {
    auto found = Registry().find(item.name);
    if (found != Registry().end() && found->second->defined &&
        found->second->description != item.description) {
      Napi::Error error =
          Napi::Error::New(env, "interface " + item.name + " is already defined differently");
      error.Set("code", Napi::String::New(env, "ERR_WAYLAND_INTERFACE_REDEFINED"));
      throw error;
    }
  }
  for (const PendingInterface& item : pending) {
    InterfaceRecord* record = RecordFor(item.name);
    if (record->defined) continue;  // identical redefinition
    record->iface.version = static_cast<int>(item.version);
    record->iface.method_count = static_cast<int>(item.requests.size());
    record->iface.methods = BuildMessages(item.requests);
    record->iface.event_count = static_cast<int>(item.events.size());
    record->iface.events = BuildMessages(item.events);
    record->description = item.description;
    record->defined = true;
  }
}

Napi::Value HasInterface(const Napi::CallbackInfo& info) {
  if (!info[0].IsString()) ThrowTypeError(info.Env(), "name must be a string");
  return Napi::Boolean::New(info.Env(),
                            FindInterface(info[0].As<Napi::String>().Utf8Value()) != nullptr);
}

std::mutex envMutex;

std::unordered_map<napi_env, EnvState*>& EnvStates() {
  static auto* states = new std::unordered_map<napi_env, EnvState*>();
  return *states;
}

}  // namespace

const wl_interface* FindInterface(const std::string& name) {
  std::lock_guard<std::mutex> lock(registryMutex);
  auto found = Registry().find(name);
  if (found == Registry().end() || !found->second->defined) return nullptr;
  return &found->second->iface;
}

bool IsDefined(const wl_interface* iface) {
  if (iface == nullptr) return false;
  std::lock_guard<std::mutex> lock(registryMutex);
  auto found = Registry().find(iface->name);
  // Interfaces from libwayland itself (wl_display_interface...) are complete too.
  if (found == Registry().end() || &found->second->iface != iface) return true;
  return found->second->defined;
}

bool ParseMessage(const wl_message& message, MessageShape* shape) {
  const char* signature = message.signature;
  int since = 0;
  while (*signature >= '0' && *signature <= '9') {
    since = since * 10 + (*signature - '0');
    signature++;
  }
  shape->since = since == 0 ? 1 : since;
  shape->count = 0;
  bool nullable = false;
  for (; *signature != '\0'; signature++) {
    if (*signature == '?') {
      nullable = true;
      continue;
    }
    if (shape->count == kMaxArgs || !IsSignatureLetter(*signature)) return false;
    ArgSpec& arg = shape->args[shape->count];
    arg.type = *signature;
    arg.nullable = nullable;
    arg.iface = message.types != nullptr ? message.types[shape->count] : nullptr;
    shape->count++;
    nullable = false;
  }
  return true;
}

void EncodeScalar(Napi::Env env, const ArgSpec& spec, const Napi::Value& value, const ArgName& what,
                  ArgStorage& storage, wl_argument* out) {
  switch (spec.type) {
    case 'i':
    case 'u': {
      if (!value.IsNumber()) ThrowTypeError(env, what + " must be a number");
      double number = value.As<Napi::Number>().DoubleValue();
      double low = spec.type == 'i' ? -2147483648.0 : 0.0;
      double high = spec.type == 'i' ? 2147483647.0 : 4294967295.0;
      if (std::trunc(number) != number || number < low || number > high) {
        ThrowRangeError(env, what + " must be an integer in " +
                                 (spec.type == 'i' ? "int32" : "uint32") + " range, got " +
                                 value.ToString().Utf8Value());
      }
      if (spec.type == 'i') {
        out->i = static_cast<int32_t>(number);
      } else {
        out->u = static_cast<uint32_t>(number);
      }
      return;
    }
    case 'f': {
      if (!value.IsNumber()) ThrowTypeError(env, what + " must be a number");
      double number = value.As<Napi::Number>().DoubleValue();
      // 24.8 fixed point: the integer part must fit in 24 signed bits.
      if (!std::isfinite(number) || number < -8388608.0 || number >= 8388608.0) {
        ThrowRangeError(env, what + " does not fit in wl_fixed_t");
      }
      out->f = wl_fixed_from_double(number);
      return;
    }
    case 's': {
      if (value.IsNull() || value.IsUndefined()) {
        if (!spec.nullable) ThrowTypeError(env, what + " must be a string (not nullable)");
        out->s = nullptr;
        return;
      }
      if (!value.IsString()) ThrowTypeError(env, what + " must be a string");
      if (storage.strings.capacity() == 0) storage.strings.reserve(kMaxArgs);
      storage.strings.push_back(value.As<Napi::String>().Utf8Value());
      if (storage.strings.back().find('\0') != std::string::npos) {
        ThrowTypeError(env, what + " must not contain NUL characters");
      }
      out->s = storage.strings.back().c_str();
      return;
    }
    case 'a': {
      if (value.IsNull() || value.IsUndefined()) {
        if (!spec.nullable) ThrowTypeError(env, what + " must be a Uint8Array (not nullable)");
        out->a = nullptr;
        return;
      }
      if (!value.IsTypedArray() && !value.IsDataView()) {
        ThrowTypeError(env, what + " must be a Uint8Array");
      }
      wl_array array{};
      if (value.IsTypedArray()) {
        Napi::TypedArray typed = value.As<Napi::TypedArray>();
        array.size = typed.ByteLength();
        array.data = static_cast<uint8_t*>(typed.ArrayBuffer().Data()) + typed.ByteOffset();
      } else {
        Napi::DataView view = value.As<Napi::DataView>();
        array.size = view.ByteLength();
        array.data = static_cast<uint8_t*>(view.ArrayBuffer().Data()) + view.ByteOffset();
      }
      array.alloc = array.size;
      if (storage.arrays.capacity() == 0) storage.arrays.reserve(kMaxArgs);
      storage.arrays.push_back(array);
      out->a = &storage.arrays.back();
      return;
    }
    case 'h':
      out->h = FdArg(value, what.Text().c_str());
      return;
    default:
      ThrowTypeError(env, what + ": internal error, not a scalar argument");
  }
}

Napi::Value DecodeScalar(Napi::Env env, const ArgSpec& spec, const wl_argument& arg) {
  switch (spec.type) {
    case 'i':
      return Napi::Number::New(env, arg.i);
    case 'u':
      return Napi::Number::New(env, arg.u);
    case 'f':
      return Napi::Number::New(env, wl_fixed_to_double(arg.f));
    case 's':
      if (arg.s == nullptr) return env.Null();
      return Napi::String::New(env, arg.s);
    case 'a': {
      if (arg.a == nullptr) return env.Null();
      Napi::Uint8Array copy = Napi::Uint8Array::New(env, arg.a->size);
      if (arg.a->size > 0) memcpy(copy.Data(), arg.a->data, arg.a->size);
      return copy;
    }
    case 'h':
      return Napi::Number::New(env, arg.h);
    default:
      return env.Undefined();
  }
}

std::string ArgName::Text() const {
  return std::string(interfaceName) + "." + messageName + " argument " + std::to_string(index);
}

void CloseReceivedFds(const MessageShape& shape, const wl_argument* args) {
  for (int i = 0; i < shape.count; i++) {
    if (shape.args[i].type == 'h' && args[i].h >= 0) close(args[i].h);
  }
}

Napi::Error PlainError(Napi::Env env, const std::string& message, const char* code) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  return error;
}

const wl_message& MessageAt(Napi::Env env, const wl_interface* iface, bool request, uint32_t opcode,
                            MessageShape* shape) {
  int count = request ? iface->method_count : iface->event_count;
  if (opcode >= static_cast<uint32_t>(count)) {
    ThrowRangeError(env, std::string(iface->name) +
                             (request ? " has no request " : " has no event ") +
                             std::to_string(opcode));
  }
  const wl_message& message = request ? iface->methods[opcode] : iface->events[opcode];
  if (!ParseMessage(message, shape)) {
    ThrowTypeError(env, request ? "malformed request signature" : "malformed event signature");
  }
  return message;
}

void CheckCall(Napi::Env env, const wl_interface* iface, const wl_message& message,
               const MessageShape& shape, uint32_t version, const char* holder,
               const Napi::Array& values) {
  if (version != 0 && static_cast<uint32_t>(shape.since) > version) {
    throw PlainError(env,
                     std::string(iface->name) + "." + message.name + " needs version " +
                         std::to_string(shape.since) + ", the " + holder + " has version " +
                         std::to_string(version),
                     "ERR_WAYLAND_VERSION");
  }
  if (values.Length() != static_cast<uint32_t>(shape.count)) {
    ThrowTypeError(env, std::string(iface->name) + "." + message.name + " takes " +
                            std::to_string(shape.count) + " arguments, got " +
                            std::to_string(values.Length()));
  }
}

void EncodeArgs(Napi::Env env, const wl_interface* iface, const wl_message& message,
                const MessageShape& shape, const Napi::Array& values, ArgStorage& storage,
                wl_argument* args, const ObjectEncoder& encodeObject) {
  for (int i = 0; i < shape.count; i++) {
    const ArgSpec& spec = shape.args[i];
    Napi::Value value = values.Get(i);
    ArgName what{iface->name, message.name, i};
    if (spec.type == 'o' && spec.nullable && (value.IsNull() || value.IsUndefined())) {
      args[i].o = nullptr;
    } else if (spec.type == 'o' || spec.type == 'n') {
      encodeObject(spec, value, what, &args[i]);
    } else {
      EncodeScalar(env, spec, value, what, storage, &args[i]);
    }
  }
}

void DeliverMessage(Napi::Env env, const Napi::Function& dispatch, const Napi::Value& self,
                    uint32_t opcode, const MessageShape& shape, const wl_argument* args,
                    const ObjectDecoder& decodeObject,
                    const std::function<void(const Napi::Error&)>& onError) {
  bool delivered = false;
  try {
    Napi::Array values = Napi::Array::New(env, shape.count);
    for (int i = 0; i < shape.count; i++) {
      const ArgSpec& spec = shape.args[i];
      bool object = spec.type == 'o' || spec.type == 'n';
      values.Set(i, object ? decodeObject(spec, args[i]) : DecodeScalar(env, spec, args[i]));
    }
    delivered = true;
    dispatch.Call(self, {Napi::Number::New(env, opcode), values});
  } catch (const Napi::Error& error) {
    if (!delivered) CloseReceivedFds(shape, args);
    onError(error);
  }
}

int StartLoopHandles(uv_loop_t* loop, int fd, void* data, uv_poll_cb onPoll,
                     uv_prepare_cb onPrepare, uv_poll_t** poll, uv_prepare_t** prepare) {
  auto* newPoll = new uv_poll_t;
  int status = uv_poll_init(loop, newPoll, fd);
  if (status != 0) {
    delete newPoll;
    return status;
  }
  newPoll->data = data;
  uv_poll_start(newPoll, UV_READABLE, onPoll);
  auto* newPrepare = new uv_prepare_t;
  uv_prepare_init(loop, newPrepare);
  newPrepare->data = data;
  uv_prepare_start(newPrepare, onPrepare);
  *poll = newPoll;
  *prepare = newPrepare;
  return 0;
}

EnvState& StateOf(Napi::Env env) {
  std::lock_guard<std::mutex> lock(envMutex);
  auto& states = EnvStates();
  auto found = states.find(env);
  if (found != states.end()) return *found->second;
  auto* state = new EnvState();
  states.emplace(env, state);
  napi_env rawEnv = env;
  env.AddCleanupHook([rawEnv]() {
    std::lock_guard<std::mutex> cleanupLock(envMutex);
    auto entry = EnvStates().find(rawEnv);
    if (entry == EnvStates().end()) return;
    delete entry->second;
    EnvStates().erase(entry);
  });
  return *state;
}

std::string DescribeError(const Napi::Error& error) {
  try {
    Napi::Value value = error.Value();
    if (value.IsObject()) {
      Napi::Value stack = value.As<Napi::Object>().Get("stack");
      if (stack.IsString()) return stack.As<Napi::String>().Utf8Value();
    }
    return value.ToString().Utf8Value();
  } catch (const Napi::Error&) {
    return error.Message();
  }
}

void ReportError(Napi::Env env, const Napi::FunctionReference& handler,
                 const std::vector<napi_value>& extraArgs, const Napi::Error& error,
                 const char* context) {
  if (!handler.IsEmpty()) {
    try {
      std::vector<napi_value> args{error.Value()};
      args.insert(args.end(), extraArgs.begin(), extraArgs.end());
      Napi::Function function = handler.Value();  // the handler may replace itself
      function.Call(env.Undefined(), args);
      return;
    } catch (const Napi::Error& handlerError) {
      fprintf(stderr, "guestfb wayland: the error handler threw: %s\n",
              DescribeError(handlerError).c_str());
    }
  }
  fprintf(stderr, "guestfb wayland: %s threw: %s\n", context, DescribeError(error).c_str());
}

const wl_interface* InterfaceArg(const Napi::Value& value, const char* what) {
  Napi::Env env = value.Env();
  if (!value.IsString()) ThrowTypeError(env, std::string(what) + " must be an interface name");
  std::string name = value.As<Napi::String>().Utf8Value();
  const wl_interface* iface = FindInterface(name);
  if (iface == nullptr) {
    Napi::Error error =
        Napi::Error::New(env, "interface " + name + " is not defined (call defineInterfaces)");
    error.Set("code", Napi::String::New(env, "ERR_WAYLAND_UNKNOWN_INTERFACE"));
    throw error;
  }
  return iface;
}

}  // namespace guestfb::wayland

namespace guestfb {

void InitWaylandInterfaces(Napi::Env env, Napi::Object exports) {
  exports.Set("defineInterfaces",
              Napi::Function::New(env, wayland::DefineInterfaces, "defineInterfaces"));
  exports.Set("hasInterface", Napi::Function::New(env, wayland::HasInterface, "hasInterface"));
}

}  // namespace guestfb
