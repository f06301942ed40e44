#include "common.h"

#include <errno.h>
#include <string.h>

namespace guestfb {

const char* ErrnoName(int err) {
  const char* name = strerrorname_np(err);
  return name != nullptr ? name : "EUNKNOWN";
}

Napi::Error ErrnoError(Napi::Env env, const char* syscall, int err) {
  std::string message = std::string(syscall) + ": " + strerror(err);
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, ErrnoName(err)));
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("syscall", Napi::String::New(env, syscall));
  return error;
}

void ThrowErrno(Napi::Env env, const char* syscall, int err) {
  throw ErrnoError(env, syscall, err);
}

void ThrowTypeError(Napi::Env env, const std::string& message) {
  Napi::Error error = Napi::TypeError::New(env, message);
  error.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_TYPE"));
  throw error;
}

void ThrowRangeError(Napi::Env env, const std::string& message) {
  Napi::Error error = Napi::RangeError::New(env, message);
  error.Set("code", Napi::String::New(env, "ERR_OUT_OF_RANGE"));
  throw error;
}

int FdArg(const Napi::Value& value, const char* what) {
  Napi::Env env = value.Env();
  if (!value.IsNumber())
    ThrowTypeError(env, std::string(what) + " must be a file descriptor number");
  double number = value.As<Napi::Number>().DoubleValue();
  if (number < 0 || number > 2147483647 || number != static_cast<int>(number)) {
    ThrowRangeError(env, std::string(what) + " is not a valid file descriptor");
  }
  return static_cast<int>(number);
}

uint32_t Uint32Arg(const Napi::Value& value, const char* what) {
  Napi::Env env = value.Env();
  if (!value.IsNumber()) ThrowTypeError(env, std::string(what) + " must be a number");
  double number = value.As<Napi::Number>().DoubleValue();
  if (!(number >= 0 && number <= 4294967295.0) || number != static_cast<uint32_t>(number)) {
    ThrowRangeError(env, std::string(what) + " must be an integer in uint32 range");
  }
  return static_cast<uint32_t>(number);
}

uint64_t SizeArg(const Napi::Value& value, const char* what) {
  constexpr double kMaxSafeInteger = 9007199254740991.0;
  Napi::Env env = value.Env();
  if (!value.IsNumber()) ThrowTypeError(env, std::string(what) + " must be a number");
  double number = value.As<Napi::Number>().DoubleValue();
  if (!(number >= 0 && number <= kMaxSafeInteger) ||
      number != static_cast<double>(static_cast<uint64_t>(number))) {
    ThrowRangeError(env, std::string(what) + " must be a non-negative safe integer");
  }
  return static_cast<uint64_t>(number);
}

napi_callback_scope OpenCallbackScope(Napi::Env env, Napi::Object resource,
                                      napi_async_context context) {
  napi_callback_scope scope = nullptr;
  napi_status status = napi_open_callback_scope(env, resource, context, &scope);
  if (status != napi_ok) throw Napi::Error::New(env, "napi_open_callback_scope failed");
  return scope;
}

}  // namespace guestfb
