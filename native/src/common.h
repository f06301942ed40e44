// Shared helpers for the guestfb addon: errno-carrying errors and per-addon state.
#pragma once

#include <napi.h>

#include <string>

namespace guestfb {

// Builds an Error shaped like Node's own system errors: message "syscall: strerror",
// with `code` (e.g. "EINVAL"), `errno` (positive number) and `syscall`.
Napi::Error ErrnoError(Napi::Env env, const char* syscall, int err);

// Throws ErrnoError as a C++ exception (NAPI_CPP_EXCEPTIONS is on).
[[noreturn]] void ThrowErrno(Napi::Env env, const char* syscall, int err);

// Throws a TypeError/RangeError with a `code` property.
[[noreturn]] void ThrowTypeError(Napi::Env env, const std::string& message);
[[noreturn]] void ThrowRangeError(Napi::Env env, const std::string& message);

// Symbolic errno name ("EINVAL"), or "E<number>" when unknown.
const char* ErrnoName(int err);

// Reads an fd argument: a non-negative int32.
int FdArg(const Napi::Value& value, const char* what);

// A callback scope with `resource` as its async resource, for a Napi::CallbackScope to close.
// node-addon-api's own constructor makes a new empty object as the resource each time: an
// allocation in every loop turn that flushes or dispatches.
napi_callback_scope OpenCallbackScope(Napi::Env env, Napi::Object resource,
                                      napi_async_context context);

// Reads a uint32 number argument (ids, versions, opcodes, flags).
uint32_t Uint32Arg(const Napi::Value& value, const char* what);

// Reads a non-negative safe integer number argument (offsets, sizes, positions).
uint64_t SizeArg(const Napi::Value& value, const char* what);

// Each module registers its functions on `exports`.
void InitWaylandInterfaces(Napi::Env env, Napi::Object exports);
void InitWaylandServer(Napi::Env env, Napi::Object exports);
void InitWaylandClient(Napi::Env env, Napi::Object exports);
void InitFd(Napi::Env env, Napi::Object exports);
void InitDrm(Napi::Env env, Napi::Object exports);

}  // namespace guestfb
