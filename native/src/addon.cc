// Entry point of the guestfb addon: each module adds its functions to the exports.
#include "common.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  guestfb::InitWaylandInterfaces(env, exports);
  guestfb::InitWaylandServer(env, exports);
  guestfb::InitWaylandClient(env, exports);
  guestfb::InitFd(env, exports);
  guestfb::InitDrm(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(guestfb, Init)
